"""JSONL task files (r1mini/task_files.py, FileTask): the four checkers against hand-worked answers, the held-out split,
and every kind of malformed line, which must name the file, the line and what is wrong."""
import json
import random

import pytest

from r1mini.config import ConfigError, UserError, command_line_message
from r1mini.evaluate import heldout_problems
from r1mini.rewards import accuracy_reward
from r1mini.task_files import CHECKERS, FileTask, choice_letter, final_number, load_task_file, task_for, task_set
from r1mini.tasks import Problem, draw_problems, split_of


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def one(tmp_path, row, spec_suffix=""):
    """The only problem of a one-line file (named as a test file, so that the split does not drop it)."""
    path = write(tmp_path / "one_test.jsonl", [row])
    return load_task_file(str(path) + spec_suffix).pool["test"][0]


def answers(problem, *texts):
    return [accuracy_reward(f"<think> . </think> <answer> {t} </answer>", problem) for t in texts]


def test_number_checker_takes_the_final_number(tmp_path):
    p = one(tmp_path, {"question": "How much?", "answer": "1,234.50", "checker": "number"})
    assert answers(p, "$1,234.50 in total", "1234.5", "It is 3, no: 1234.50 dollars", "1,234", "1235.5") == \
        [1, 1, 1, 0, 0]
    assert final_number("72") == 72 and final_number("-.5 kg") == -0.5 and final_number("no digits") is None
    p = one(tmp_path, {"question": "q", "answer": 18}, ":number")
    assert answers(p, "18 eggs", "18.0", "18.01") == [1, 1, 0]


def test_countdown_checker_parses_never_evaluates(tmp_path):
    p = one(tmp_path, {"target": 24, "nums": [1, 2, 3, 4]})  # TinyZero's fields: the checker is implied
    assert p.data["checker"] == "countdown" and "24" in p.question
    assert answers(p, "(1 + 2 + 3) * 4", "4 * 3 * 2 * 1", "4 * 6", "1 * 2 * 3 * 4 * 1", "__import__('os')") == \
        [1, 1, 0, 0, 0]


def test_exact_and_choice_checkers(tmp_path):
    p = one(tmp_path, {"question": "Capital of France?", "answer": "Paris  City", "checker": "exact"})
    assert answers(p, "Paris City", " Paris\nCity ", "paris city") == [1, 1, 0]
    p = one(tmp_path, {"question": "Pick", "answer": "B", "checker": "choice", "choices": ["one", "two", "three"]})
    assert p.question == "Pick\nA. one\nB. two\nC. three"
    assert answers(p, "B", "(B)", "B.", "B) two", "A", "I think B") == [1, 1, 1, 1, 0, 0]
    assert choice_letter("b") is None


def test_answer_format_boxed_from_the_line_or_the_file(tmp_path):
    """A file of a math model's kind: the answer in its last \\boxed{} (the line's "answer_format", or the
    file's after the checker), asked for in the R1-Zero prompt; cons@k votes over the boxes."""
    from r1mini.evaluate import score
    from r1mini.formats import prompt_ids, zero_prompt
    from r1mini.sampling import Sampled
    from r1mini.tokenizer import Tokenizer
    row = {"question": "How many?", "answer": "12", "checker": "number"}
    for p in [one(tmp_path, {**row, "answer_format": "boxed"}), one(tmp_path, row, ":number:boxed"),
              one(tmp_path, {**row, "checker": "exact"}, ":boxed:number")]:  # the line's checker wins
        right, wrong = r"<think> 5 + 7 = 12 </think> So \boxed{12}.", r"<think> . </think> \boxed{13}"
        assert [accuracy_reward(c, p) for c in (right, wrong, "<think> . </think> <answer> 12 </answer>")] == \
            [1.0, 0.0, 0.0]
        result = score([Sampled(p, [right, wrong, right.replace("{12}", "{ 12 }")])], 3)
        assert result["pass@1"] == pytest.approx(2 / 3) and result["cons@3"] == 1.0 and result["format"] == 1.0
    assert one(tmp_path, row, ":number").data.get("answer_format", "tags") == "tags"  # ours by default
    tok = Tokenizer.train(["a b c"], 300)
    assert prompt_ids(tok, "Q", chat=False, answer_format="boxed")[0] == tok.encode(zero_prompt("Q", "boxed"))
    assert "\\boxed{}" in zero_prompt("Q", "boxed") and "<answer>" not in zero_prompt("Q", "boxed")


def test_checkers_never_raise_on_odd_answers():
    assert set(CHECKERS) == {"number", "exact", "choice", "countdown"}
    for checker, row in [("number", {"answer": "3"}), ("exact", {"answer": "x"}), ("choice", {"answer": "A"}),
                         ("countdown", {"target": 3, "numbers": [1, 2]})]:
        problem = Problem("jsonl", "q", "en", "", {"checker": checker, **row})
        for junk in [None, 5, "", "x" * 10_000, "((((((((((((((((1))))))))))))))))"]:
            assert task_for(problem).check(junk, problem) is False


def test_split_by_question_hash_and_test_files(tmp_path):
    rows = [{"question": f"q{i}", "answer": str(i), "checker": "number"} for i in range(300)]
    task = load_task_file(str(write(tmp_path / "train.jsonl", rows)))
    test, dev = ({p.question for p in task.pool[split]} for split in ("test", "dev"))
    assert test == {r["question"] for r in rows if split_of("jsonl", r["question"]) == "test"}
    assert dev == {r["question"] for r in rows if split_of("jsonl", r["question"]) == "dev"}
    assert 10 < len(test) < 60 and 3 < len(dev) < 40 and not (test | dev) & {p.question for p in task.pool["train"]}
    held = heldout_problems({"jsonl": task}, 5, seed=0, split="test")
    assert [p.question for p in held] == [p.question for p in task.pool["test"][:5]]  # distinct, in file order
    drawn = draw_problems(random.Random(0), {"jsonl": task}, 50, zh_share=0.5)
    assert not {p.question for p in drawn} & (test | dev)
    whole = load_task_file(str(write(tmp_path / "gsm8k_test.jsonl", rows)))
    assert len(whole.pool["test"]) == 300 and not whole.pool["train"]
    with pytest.raises(UserError, match="no train problems .a test file is held out whole"):
        whole.sample(random.Random(0))
    with pytest.raises(UserError, match="no dev problems .a test file is held out whole"):  # a run's first ask
        heldout_problems({"jsonl": whole}, 5, seed=0, split="dev")


def test_majority_votes_count_meanings(tmp_path):
    """cons@k's key: answers that mean the same are one vote, whatever the checker."""
    number = one(tmp_path, {"question": "q", "answer": "1234.5"}, ":number")
    countdown = one(tmp_path, {"target": 24, "nums": [1, 2, 3, 4]})
    choice = one(tmp_path, {"question": "q", "answer": "B"}, ":choice")
    exact = one(tmp_path, {"question": "q", "answer": "a b"}, ":exact")
    task = task_for(number)
    for problem, same, other in [(number, ["$1,234.50", "1234.5 in all"], "1234"),
                                 (countdown, ["(1 + 2 + 3) * 4", "4 * 3 * 2 * 1"], "4 * 6"),
                                 (choice, ["B", "(B)", "B) two"], "C"), (exact, ["a  b", " a b"], "ab")]:
        keys = {task.normalize(a, problem) for a in same}
        assert len(keys) == 1 and task.normalize(other, problem) not in keys


MALFORMED = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({"question": "q", "answer": "1"}, "no checker is named"),
    ({"question": "q", "answer": "1", "checker": "regex"}, "checker 'regex' is not one of"),
    ({"answer": "1", "checker": "number"}, '"question" must be a non-empty string'),
    ({"question": "q", "answer": " ", "checker": "exact"}, '"answer" must be a non-empty string or a number'),
    ({"question": "q", "answer": "many", "checker": "number"}, "needs a number in \"answer\""),
    ({"target": 5, "nums": [1, "2"]}, "a list of integers"),
    ({"nums": [1, 2], "checker": "countdown"}, "needs an integer \"target\""),
    ({"question": "q", "answer": "E", "checker": "choice", "choices": ["a", "b"]}, "one letter of A-B"),
    ({"question": "q", "answer": "AB", "checker": "choice"}, "one letter of A-Z"),
    ({"question": "q", "answer": "1", "checker": "number", "lang": "fr"}, "lang must be"),
    ({"question": "q", "answer": "1", "checker": "number", "answer_format": "latex"}, "answer_format must be"),
    ({"question": "q", "answer": "1", "checker": "number", "solution": ""}, '"solution" must be a non-empty string'),
    ({"target": 5, "nums": [2, 3], "solution": "2 + 3 = 5"}, 'on a line with its "answer"'),
]


@pytest.mark.parametrize("row,message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_line_names_file_line_and_fault(tmp_path, row, message):
    good = {"question": "fine", "answer": "1", "checker": "number"}
    path = write(tmp_path / "tasks.jsonl", [good, "", row])  # a blank line still counts: the bad one is line 3
    with pytest.raises(ValueError) as e:
        load_task_file(str(path))
    assert f"{path}, line 3" in str(e.value) and message in str(e.value)


def test_bad_task_file_specs(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_task_file(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="unknown checker 'float'"):
        load_task_file(str(write(tmp_path / "a.jsonl", [{"question": "q", "answer": "1"}])) + ":float")
    with pytest.raises(ValueError, match="unknown checker 'box'.*an answer format"):
        load_task_file(str(tmp_path / "a.jsonl") + ":number:box")
    with pytest.raises(ValueError, match="holds no problems"):
        load_task_file(str(write(tmp_path / "empty.jsonl", [""])))
    with pytest.raises(ConfigError) as e:  # what the scripts print: the flag, the file, what is wrong
        task_set("toy", str(tmp_path / "missing.jsonl"))
    assert command_line_message(e.value) == f"--tasks {tmp_path / 'missing.jsonl'}: no such file"
    number_problem = Problem("jsonl", "q", "en", "1", {"checker": "number", "answer": "1"})
    assert isinstance(task_for(number_problem), FileTask)
    assert task_for(number_problem).check("1", number_problem)
