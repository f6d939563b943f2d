"""Problems from a JSONL file: a researcher's own data set in place of the synthetic suites (`--tasks FILE`).

One problem a line: {"question": ..., "answer": ..., "checker": ...}; countdown lines give "target" and
"numbers" (or TinyZero's "nums") and may leave out the question and the checker. The checker is named on the
line, or for the whole file after a colon: `--tasks gsm8k.jsonl:number`. A line's "lang" ("en" or "zh") is
optional, and so is its "solution", a worked solution (the reasoning that reaches the answer; R1's cold start
trains on it where the R1-Zero model's own samples run short), and its "answer_format": "tags" (the answer
between <answer> tags, r1mini's own) or "boxed" (the last \\boxed{...}, as math models write it), also for the
whole file after a colon: `--tasks gsm8k_test.jsonl:number:boxed`. The four checkers parse the answer (the
final number, a countdown expression, an exact string, a choice letter); none executes it. A line's split is a
hash of its question, as for every task, unless the file is named as a test file.
"""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

from r1mini.config import ConfigError, UserError
from r1mini.formats import ANSWER_FORMATS
from r1mini.jsonl import numbered_rows
from r1mini.tasks import MAX_ANSWER_CHARS, SPLITS, TASKS, Problem, Task, get_task, split_of, suite

_NUMBER = re.compile(r"-?(?:[0-9][0-9,]*(?:\.[0-9]+)?|\.[0-9]+)", re.ASCII)
_CHOICE = re.compile(r"\(?([A-Z])\)?\.?|([A-Z])[.)]\s.*", re.DOTALL)


def final_number(text: str) -> Fraction | None:
    """The last number in the text, GSM8K style: commas between digits, a decimal point, and whatever else
    (units, a currency sign, words) are tolerated: "$1,234.50 in total" -> 1234.5."""
    if not isinstance(text, str) or len(text) > MAX_ANSWER_CHARS:
        return None
    numbers = _NUMBER.findall(text)
    return Fraction(numbers[-1].replace(",", "").rstrip(".")) if numbers else None


def choice_letter(text: str) -> str | None:
    """The letter of a multiple-choice answer: "B", "(B)", "B." or "B) because ..."."""
    m = _CHOICE.fullmatch(text.strip()) if isinstance(text, str) and len(text) <= MAX_ANSWER_CHARS else None
    return (m.group(1) or m.group(2)) if m else None


def _exact(text: str) -> str:
    return " ".join(text.split())


CHECKERS = {  # checker -> (does the answer match, the line) -> bool; all parse, none executes
    "number": lambda answer, d: final_number(answer) == Fraction(d["answer"]),
    "countdown": lambda answer, d: TASKS["countdown"].check(answer, Problem("countdown", "", "en", "", d)),
    "exact": lambda answer, d: _exact(answer) == _exact(d["answer"]),
    "choice": lambda answer, d: choice_letter(answer) == d["answer"],
}


def is_test_file(path: str) -> bool:
    """A file named as a test set (gsm8k_test.jsonl, test.jsonl, math-test-500.jsonl) is held out whole."""
    return re.search(r"(^|[-_.])test($|[-_.])", Path(path).stem) is not None


class FileTask(Task):
    """The problems of a JSONL file. A line's split is a hash of its question (test 10%, dev 5%, as for every
    task) unless the file is named as a test file, whose lines are all test. Problems carry their checker and
    its data, so `get_task("jsonl")` (a FileTask with no file) checks any of them."""
    name = "jsonl"

    def __init__(self, path: str = "", problems: list[Problem] | None = None):
        self.path, self.pool = path, {split: [] for split in SPLITS}
        for p in problems or []:
            self.pool["test" if is_test_file(path) else split_of(self.name, self.key(p.data))].append(p)

    @property
    def label(self):
        return Path(self.path).stem or self.name

    def sample(self, rng: random.Random, split: str = "train", lang: str = "en") -> Problem:
        """A problem of the split at random; the file's own language, whatever `lang` asks."""
        if not self.pool.get(split):
            why = " (a test file is held out whole)" if is_test_file(self.path) else ""
            raise UserError(f"{self.path} has no {split} problems{why}: use a file with {split} problems")
        return rng.choice(self.pool[split])

    def heldout(self, n: int, lang: str, split: str) -> list[Problem]:
        """The first n problems of the split (dev or test) in `lang`: distinct, the same for every model. A
        training run asks for dev problems first, so a test file stops it here, before any work."""
        if split != "test" and is_test_file(self.path):
            raise UserError(f"{self.path} has no {split} problems (a test file is held out whole): train on a file "
                            f"with train problems, and evaluate on this one with eval.py")
        return [p for p in self.pool[split] if p.lang == lang][:n]

    def key(self, data: dict) -> str:
        return data["question"]

    def check(self, answer: str, problem: Problem) -> bool:
        try:
            return CHECKERS[problem.data["checker"]](answer, problem.data)
        except Exception:  # a checker is called on model output: it must never raise
            return False

    def normalize(self, answer: str, problem: Problem) -> str:
        """One vote per meaning: a number's value, a choice's letter, a countdown expression's value when it
        uses the numbers, exact answers with their whitespace collapsed."""
        try:
            checker = problem.data["checker"]
            if checker == "countdown":
                return TASKS["countdown"].normalize(answer, problem)
            found = {"number": final_number, "choice": choice_letter}.get(checker, _exact)(answer)
            return answer.strip() if found is None else str(found)
        except Exception:  # called on model output: never raises
            return answer.strip() if isinstance(answer, str) else ""

    @property
    def solved(self) -> list[Problem]:
        """The training problems whose line carries a worked solution, in file order."""
        return [p for p in self.pool["train"] if "solution" in p.data]

    def solution(self, problem, style, lang, rng):
        """The line's own worked solution (reasoning, answer), whatever the style; a file writes no others."""
        if "solution" not in problem.data:
            raise UserError(f"{self.path}: the line of {problem.question[:60]!r} has no \"solution\" to train on")
        return tuple(problem.data["solution"])


def load_task_file(spec: str) -> FileTask:
    """A FileTask from "FILE.jsonl", "FILE.jsonl:CHECKER", "FILE.jsonl:ANSWER_FORMAT" or both after their colons
    (gsm8k.jsonl:number:boxed): what a line does not name itself. A malformed line raises UserError naming the
    file, the line and what is wrong (nothing is trained or run before every line has passed)."""
    path, _, options = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    unknown = [o for o in options.split(":") if o and o not in CHECKERS and o not in ANSWER_FORMATS]
    if unknown:
        raise ConfigError("tasks", f"{spec}: unknown checker {unknown[0]!r}; after the file name come a checker "
                                   f"({', '.join(CHECKERS)}) and/or an answer format ({', '.join(ANSWER_FORMATS)})")
    default = next((o for o in options.split(":") if o in CHECKERS), "")
    answer_format = next((o for o in options.split(":") if o in ANSWER_FORMATS), "tags")
    if not Path(path).is_file():
        raise ConfigError("tasks", f"{path}: no such file")
    problems = [_problem(row, default, f"{path}, line {n}", answer_format) for n, row in numbered_rows(path)]
    if not problems:
        raise UserError(f"{path} holds no problems")
    return FileTask(path, problems)


def _problem(row: dict, default_checker: str, where: str, default_format: str = "tags") -> Problem:
    """One line as a Problem, or UserError saying what is wrong with it."""
    countdown = "target" in row and ("nums" in row or "numbers" in row)  # TinyZero's lines name no checker
    checker = row.get("checker", default_checker or ("countdown" if countdown else ""))
    if checker not in CHECKERS:
        named = f"checker {checker!r} is" if checker else "no checker is named;"
        raise UserError(f"{where}: {named} not one of {', '.join(CHECKERS)} (name it on the line "
                        f"as \"checker\", or for the whole file after its name, FILE.jsonl:CHECKER)")
    lang = row.get("lang", "en")
    if lang not in ("en", "zh"):
        raise UserError(f"{where}: lang must be \"en\" or \"zh\", got {lang!r}")
    answer_format = row.get("answer_format", default_format)
    if answer_format not in ANSWER_FORMATS:
        raise UserError(f"{where}: answer_format must be \"tags\" or \"boxed\", got {answer_format!r}")
    data = {"checker": checker} | ({"answer_format": answer_format} if answer_format != "tags" else {})
    if checker == "countdown":
        numbers, target = row.get("numbers", row.get("nums")), row.get("target")
        if not (isinstance(numbers, list) and numbers and all(type(x) is int and x >= 0 for x in numbers)):
            raise UserError(f"{where}: a countdown line needs \"numbers\" (or \"nums\"), a list of integers >= 0")
        if type(target) is not int:
            raise UserError(f"{where}: a countdown line needs an integer \"target\", got {target!r}")
        data |= {"numbers": numbers, "target": target}
        question = row.get("question") or TASKS["countdown"].question(data, lang, None)
        answer = str(row.get("answer", ""))
    else:
        question, answer = row.get("question"), row.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise UserError(f"{where}: \"question\" must be a non-empty string")
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)
        if not isinstance(answer, str) or not answer.strip():
            raise UserError(f"{where}: \"answer\" must be a non-empty string or a number")
        if checker == "number":
            value = final_number(answer)
            if value is None:
                raise UserError(f"{where}: the number checker needs a number in \"answer\", got {answer!r}")
            answer = str(value)  # "1,234" -> "1234", "0.50" -> "1/2": what Fraction reads back
        if checker == "choice":
            question, answer = _choice_question(row, question, answer.strip(), where)
        data["answer"] = answer
    if not isinstance(question, str):
        raise UserError(f"{where}: \"question\" must be a string")
    if "solution" in row:  # the reasoning and the answer as the line writes it ("1,234.50", not the checker's 2469/2)
        shown = str(row.get("answer", "")).strip()
        if not isinstance(row["solution"], str) or not row["solution"].strip() or not shown:
            raise UserError(f"{where}: \"solution\" must be a non-empty string, on a line with its \"answer\"")
        data["solution"] = [row["solution"].strip(), shown]
    return Problem(FileTask.name, question, lang, answer, {**data, "question": question})


def _choice_question(row: dict, question: str, answer: str, where: str) -> tuple[str, str]:
    """The question with its options (if the line lists "choices") lettered under it, and the answer letter."""
    choices = row.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices) or len(choices) > 26:
        raise UserError(f"{where}: \"choices\" must be a list of at most 26 strings")
    letters = [chr(ord("A") + i) for i in range(len(choices) or 26)]
    if answer not in letters:
        raise UserError(f"{where}: a choice answer must be one letter of {letters[0]}-{letters[-1]}, got {answer!r}")
    options = "".join(f"\n{letter}. {c}" for letter, c in zip(letters, choices))
    return question + options, answer


def task_for(problem: Problem) -> Task:
    """The task that checks a problem: the task that made it (a synthetic one, or your own suite's), else its
    task by name, or a FileTask for a JSONL file's problem (which carries its own checker and data)."""
    if problem.maker is not None:
        return problem.maker
    return FileTask() if problem.task == FileTask.name else get_task(problem.task)


def task_set(suite_name: str, tasks_file: str = "") -> dict[str, Task]:
    """The tasks a run draws from: the JSONL file's when one is given (--tasks), else the suite's."""
    if tasks_file:
        return {FileTask.name: load_task_file(tasks_file)}
    return suite(suite_name)
