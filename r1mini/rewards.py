"""Rule rewards on completions in the R1-Zero format `<think> ... </think> <answer> ... </answer>`.

One parser serves every consumer (rewards, rejection sampling, evaluation), so a completion means the
same thing everywhere. Everything here reads model output, which is hostile input: regular expressions
with no nested quantifiers, bounded input, no eval.

A problem whose answer_format is "boxed" (formats.answer_format: a JSONL file's choice) is read the way math
models write: the answer is the last `\\boxed{...}` (or `\\fbox{...}`, or `\\boxed 5`), found by a linear
scan that counts braces, and the format is one think block, then text holding that box.
"""
from __future__ import annotations

import re
from fractions import Fraction
from functools import partial

from r1mini.config import ConfigError, import_named
from r1mini.formats import answer_format
from r1mini.task_files import task_for
from r1mini.tasks import Problem

MAX_COMPLETION_CHARS = 20_000
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
TAG = re.compile(r"</?(?:think|answer)>")  # any of TAGS (filters.py strips them too)
# exactly one think block, then exactly one non-empty answer block, then nothing but whitespace
_FORMAT = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
REFLECTION_WORDS = ("wait", "check", "verify", "等等", "检查", "验证")
_STEP = re.compile(r"[=＝]")


def _one_of_each_tag(text: str) -> bool:
    # checked before the regexes below: with one tag of each kind their lazy groups match in linear time,
    # whereas hundreds of repeated tags made parse_reasoning_reply's three groups backtrack for seconds
    return all(text.count(tag) == 1 for tag in TAGS)


def parse_completion(completion: str, answer_format: str = "tags") -> tuple[str, str] | None:
    """(think, answer) of a well-formed completion, each stripped of surrounding whitespace, or None.

    Well-formed: optional whitespace, one <think>...</think> block (its text may be empty), optional
    whitespace, one <answer>...</answer> block whose text is not blank, optional whitespace, nothing else.
    Extra, nested or reordered tags, text outside the blocks, or upper-case tags -> None. (Also None for a
    non-string or one over MAX_COMPLETION_CHARS: model output is bounded before any regex reads it.)
    answer_format "boxed": one think block, then any text that holds a boxed answer (parse_boxed_reply).
    """
    if answer_format == "boxed":
        parsed = parse_boxed_reply(completion)
        return None if parsed is None or parsed[0] is None else (parsed[0], parsed[2])
    if not isinstance(completion, str) or len(completion) > MAX_COMPLETION_CHARS or not _one_of_each_tag(completion):
        return None
    m = _FORMAT.fullmatch(completion)
    if m is None or TAG.search(m.group(1)) or TAG.search(m.group(2)):
        return None
    think, answer = m.group(1).strip(), m.group(2).strip()
    return (think, answer) if answer else None


# R1's chat reply: a think block, then a non-empty readable summary that ends in one answer block
_REPLY = re.compile(r"\s*<think>(.*?)</think>(.*?)<answer>(.*?)</answer>\s*", re.DOTALL)


def parse_reasoning_reply(reply: str, answer_format: str = "tags") -> tuple[str, str, str] | None:
    """(think, summary, answer) of a well-formed R1 chat reply, or None (extra or misplaced tags too).
    answer_format "boxed": the summary is the text after the think block, which holds the boxed answer."""
    if answer_format == "boxed":
        parsed = parse_boxed_reply(reply)
        return None if parsed is None or parsed[0] is None else parsed
    if not isinstance(reply, str) or len(reply) > MAX_COMPLETION_CHARS or not _one_of_each_tag(reply):
        return None
    m = _REPLY.fullmatch(reply)
    if m is None or any(TAG.search(g) for g in m.groups()):
        return None
    think, summary, answer = (g.strip() for g in m.groups())
    return (think, summary, answer) if summary and answer else None


def reply_format_reward(reply: str, answer_format: str = "tags") -> float:
    """1.0 for `<think>...</think> summary <answer>non-empty</answer>` (or a summary with a non-empty box, for
    answer_format "boxed"), else 0.0."""
    return 1.0 if parse_reasoning_reply(reply, answer_format) is not None else 0.0


# -- \boxed{} answers --------------------------------------------------------------------------------------------
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` or `\\fbox{...}` in text, stripped: braces nested to any depth
    (`\\boxed{\\frac{1}{2}}` -> `\\frac{1}{2}`), spaces allowed before the brace; or LaTeX's brace-less
    argument, `\\boxed 5` (the run of characters up to a space, a `$` or the end). None when there is none, when
    the last one is never closed (a reply cut off mid-answer) or is empty, or when the command goes on as
    another (`\\boxedx`). One scan back for the command, one forward over its argument: linear in the text."""
    if not isinstance(text, str) or len(text) > MAX_COMPLETION_CHARS:
        return None
    start, command = max((text.rfind(c), c) for c in _BOX_COMMANDS)
    if start < 0:
        return None
    i = start + len(command)
    j = i
    while j < len(text) and text[j] in " \t":
        j += 1
    if j < len(text) and text[j] == "{":
        depth = 0
        for k in range(j, len(text)):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                return text[j + 1:k].strip() or None
        return None  # never closed
    if j == i and j < len(text) and text[j].isalpha():
        return None  # \boxedx: another command
    end = j
    while end < len(text) and not text[end].isspace() and text[end] != "$":
        end += 1
    return text[j:end] or None


def parse_boxed_reply(text: str) -> tuple[str | None, str, str] | None:
    """(think, the text after it, the boxed answer) of a reply whose answer is the last box, or None without a
    box. think is None unless the reply is one well-formed think block (`<think>` and `</think>` once each, in
    that order, nothing before it but whitespace, non-empty) followed by text that holds the last box, with no
    <answer> tags."""
    answer = last_boxed(text)
    if answer is None:
        return None
    think = None
    if text.count("<think>") == text.count("</think>") == 1 and "<answer>" not in text and "</answer>" not in text:
        before, _, rest = text.partition("<think>")
        inside, _, after = rest.partition("</think>")
        if not before.strip() and "</think>" in rest and inside.strip() and last_boxed(after) is not None:
            think, text = inside.strip(), after.strip()
    return think, text.strip(), answer


def reasoning_text(completion: str) -> str:
    """The think block's text if there is one, else the whole completion (what language is judged on)."""
    start, end = completion.find("<think>"), completion.find("</think>")
    return completion[start + len("<think>"):end] if 0 <= start < end else completion


def extract_answer(completion: str, answer_format: str = "tags") -> str | None:
    """The text of the answer block: the last `<answer>...</answer>` if any; None when there is none. With
    answer_format "boxed", the content of the last box instead (last_boxed).

    Lenient on purpose (an accuracy reward should not also be a format reward): the answer is found even
    when the think block is missing. format_reward is the strict one.
    """
    if answer_format == "boxed":
        return last_boxed(completion)
    if not isinstance(completion, str) or len(completion) > MAX_COMPLETION_CHARS:
        return None
    end = completion.rfind("</answer>")
    start = completion.rfind("<answer>", 0, end if end >= 0 else None)
    if start < 0 or end < 0:
        return None
    answer = completion[start + len("<answer>"):end].strip()
    return answer or None


def format_reward(completion: str, answer_format: str = "tags") -> float:
    """1.0 for exactly `<think>non-empty</think><answer>non-empty</answer>` (whitespace around is fine), else
    0.0. An empty reasoning block is not the format: with it, a well-formed empty guess would earn as much
    format reward as reasoning, and a small model drifts there (the format-only optimum). answer_format
    "boxed": `<think>non-empty</think>` then text with a non-empty box."""
    parsed = parse_completion(completion, answer_format)
    return 1.0 if parsed is not None and parsed[0] else 0.0


def accuracy_reward(completion: str, problem: Problem) -> float:
    answer = extract_answer(completion, answer_format(problem))
    return 1.0 if answer is not None and task_for(problem).check(answer, problem) else 0.0


def is_step_by_step(completion: str) -> bool:
    """A completion reasons step by step when its think block holds more than one equation."""
    parsed = parse_completion(completion)
    think = parsed[0] if parsed else completion.split("</think>")[0]
    return len(_STEP.findall(think[:MAX_COMPLETION_CHARS])) > 1


# one written fact: numbers joined by + - × * / (no brackets), then "=" and the value it claims
# (not starting inside a bracket's or another chain's operands: "(3 + 4) * 10 + 16 = 86" holds no fact)
_FACT = re.compile(r"(?<![\d)])(?<![-+×*/)] )(?<![-+×*/])"
                   r"(-?\d{1,12}(?: ?[-+×*/] ?-?\d{1,12}){1,6}) ?= ?(-?\d{1,12})(?!\d)")
_FACT_TOKEN = re.compile(r"(-?\d+)([-+×*/]|$)")  # a number (its sign, where one stands first) and the operator after it


def arithmetic_facts(text: str) -> list[tuple[str, bool]]:
    """Every fact `x op y [op z ...] = v` written in the text, and whether it is right (× and / before + and -,
    exactly, with fractions): "3+5+1=9" right, "2×-9=-18" right, "-4-14=-12" wrong. Read, never executed."""
    facts = []
    for m in _FACT.finditer(text[:MAX_COMPLETION_CHARS]):
        tokens = [part for pair in _FACT_TOKEN.findall(m.group(1).replace(" ", "")) for part in pair if part]
        facts.append((m.group(0), _chain_value(tokens) == int(m.group(2))))
    return facts


_N = r"(-?\d+)"
# a column of the check: "71+85 vs 157: 1+5=6, 6 and 7 differ." / "6×34 vs 208: 6×4=24, 24+4=28, 8 and 8 agree."
_CHECK_COLUMN = re.compile(rf"(\d+) ?[+×] ?(\d+) (?:vs|对) (\d+) ?[:：]([^.。]*?)[,，] ?{_N} (?:and|和) {_N} "
                           r"(agree|differ|相同|不同)")
# linear: "Check x=-9 in 2x+14=-4: 2×-9=-18, -18+14=-4, -4 and -4 agree."
_LINEAR_CHECK = re.compile(rf"x ?= ?{_N} (?:in|代入) [^:：]*?= ?{_N} ?[:：](.*?)[,，] ?{_N} (?:and|和) {_N} "
                           r"(agree|differ|相同|不同)")


def _last_value(expr: str) -> int | None:
    values = re.findall(r"= ?(-?\d+)", expr)
    return int(values[-1]) if values else None


def check_comparisons(check: str) -> list[dict] | None:
    """Each comparison the check wrote, taken apart: the two values it set side by side and whether they are
    equal, its verdict ("agree", else "differ"), and whether it copied the two values right (its own result,
    and the claim's digit restated before it); None when the check is not in the corpus's shape
    (r1mini/tasks.py: a linear equation's x put back, else columns worked again, as check_steps writes them)."""
    out = []
    m = _LINEAR_CHECK.search(check)
    if m:
        rhs, expr, mine, theirs, word = m.group(2, 3, 4, 5, 6)
        return [{"equal": int(mine) == int(theirs), "said same": word in ("agree", "相同"),
                 "copied": int(mine) == _last_value(expr) and int(theirs) == int(rhs)}]
    for m in _CHECK_COLUMN.finditer(check):
        a, b, claim, expr, mine, theirs, word = m.group(1, 2, 3, 4, 5, 6, 7)
        value = _last_value(expr)
        if value is None:
            return None
        last = int(a) < 10 and int(b) < 10
        want = (value, int(claim)) if last else (value % 10, int(claim) % 10)
        out.append({"equal": int(mine) == int(theirs), "said same": word in ("agree", "相同"),
                    "copied": (int(mine), int(theirs)) == want})
    return out or None


def _chain_value(tokens: list[str]) -> Fraction | None:
    """The value of number (op number)*: products and quotients first, then sums, left to right."""
    terms, sign, i = [], 1, 1
    value = Fraction(int(tokens[0]))
    while i < len(tokens) - 1:
        op, x = tokens[i], Fraction(int(tokens[i + 1]))
        if op in "×*/":
            if op == "/" and x == 0:
                return None
            value = value * x if op != "/" else value / x
        else:
            terms.append(sign * value)
            sign, value = (1 if op == "+" else -1), x
        i += 2
    return sum(terms) + sign * value


def corrects_itself(text: str) -> bool:
    """Does the reply stop itself ("wait", "等等"), as after a check that disagreed, rather than only check?"""
    low = text.lower()
    return "wait" in low or "等等" in text


def count_reflection_words(text: str) -> int:
    low = text[:MAX_COMPLETION_CHARS].lower()
    return sum(low.count(w) for w in REFLECTION_WORDS)


# -- language ---------------------------------------------------------------------------------------------
# An English word is a run of Latin letters; Chinese has no spaces, so each Han character counts as a word.
_EN_WORD = re.compile(r"[A-Za-z]+")
_ZH_WORD = re.compile(r"[\u4e00-\u9fff]")


def language_counts(text: str) -> tuple[int, int]:
    """(English words, Chinese words) in text: an English word is a run of Latin letters in any case ("THE",
    "McDonald" and "x" are one word each), a Chinese word is one Han character (U+4E00..U+9FFF); digits
    and symbols count for neither. Empty text: (0, 0)."""
    text = text[:MAX_COMPLETION_CHARS]
    return len(_EN_WORD.findall(text)), len(_ZH_WORD.findall(text))


def language_consistency(text: str, lang: str) -> float:
    """Share of the words of `text` that are in `lang` ("en" or "zh") among those in either language
    (the R1 paper's language-consistency reward, §2.3.2), words counted by language_counts. Text with no
    words of either (digits and symbols only, or nothing) counts as 0.0: it is not written in the prompt's
    language, and an empty reasoning block must not earn the language reward."""
    if lang not in ("en", "zh"):
        raise ValueError(f"lang must be 'en' or 'zh', got {lang!r}")
    en, zh = language_counts(text)
    if en + zh == 0:
        return 0.0
    return (en if lang == "en" else zh) / (en + zh)


# -- the reward of each RL stage ---------------------------------------------------------------------------
# Each takes the completions and, for each, what it answers (a Problem, or a general chat prompt), and
# returns (rewards, parts): the scalar reward of every completion and the named parts it was made of, which
# the RL engine logs (a part may cover only some completions, e.g. accuracy only the reasoning prompts).

def zero_rewards(completions: list[str], problems: list[Problem],
                 format_weight: float = 1.0) -> tuple[list[float], dict[str, list[float]]]:
    """R1-Zero's rule rewards (§2.2.2): accuracy + format, each 0 or 1, with equal weight (format_weight 1)."""
    accuracy = [accuracy_reward(c, p) for c, p in zip(completions, problems)]
    fmt = [format_reward(c, answer_format(p)) for c, p in zip(completions, problems)]
    return [a + format_weight * f for a, f in zip(accuracy, fmt)], {"accuracy": accuracy, "format": fmt}


def load_reward(spec: str):
    """Your own reward function, named `module:function` (config.import_named; e.g. my_rewards:length_bonus
    for my_rewards.py in the working directory). It takes what zero_rewards takes and returns what it returns.
    The module is your code, imported; model output is never executed."""
    fn = import_named(spec, "reward")
    if not callable(fn):
        raise ConfigError("reward", f"{spec}: {spec.partition(':')[2]!r} is not a function")
    return fn


def reasoning_rewards(replies: list[str], problems: list[Problem],
                      lang_weight: float = 1.0) -> tuple[list[float], dict[str, list[float]]]:
    """R1's reasoning RL (§2.3.2): accuracy + the chat reply's format + lang_weight * the language consistency
    of the reasoning with the prompt's language."""
    accuracy = [accuracy_reward(r, p) for r, p in zip(replies, problems)]
    fmt = [reply_format_reward(r, answer_format(p)) for r, p in zip(replies, problems)]
    lang = [language_consistency(reasoning_text(r), p.lang) for r, p in zip(replies, problems)]
    rewards = [a + f + lang_weight * lc for a, f, lc in zip(accuracy, fmt, lang)]
    return rewards, {"accuracy": accuracy, "reply_format": fmt, "lang_consistency": lang}


def plain_reply_reward(reply: str) -> float:
    """A general prompt's format: 1.0 for a non-empty reply with no reasoning block (no CoT for simple
    queries, §2.3.3), else 0.0."""
    return float("<think>" not in reply and "<answer>" not in reply and len(reply.strip()) > 0)


def judged_text(reply: str, kind: str) -> str:
    """What the reward model reads (§2.3.4): helpfulness judges the summary only (after any think block),
    harmlessness the whole reply; stripped, as the replies the reward model was trained on."""
    return (reply.split("</think>")[-1] if kind == "helpful" else reply).strip()


def general_rewards(replies: list[str], prompts: list[dict], score) -> tuple[list[float], dict[str, list[float]]]:
    """R1's final RL on general prompts (§2.3.4): the reward model's score of the judged text, plus the plain
    reply format. score(users, texts) -> one float per reply: the reward model, called once on the batch."""
    if not replies:
        return [], {"rm_score": [], "plain_format": []}
    scores = score([g["user"] for g in prompts], [judged_text(r, g["kind"]) for r, g in zip(replies, prompts)])
    fmt = [plain_reply_reward(r) for r in replies]
    return [s + f for s, f in zip(scores, fmt)], {"rm_score": scores, "plain_format": fmt}


def all_scenario_rewards(replies: list[str], items: list, lang_weight: float, score,
                         reasoning=None) -> tuple[list[float], dict[str, list[float]]]:
    """R1's final RL (§2.3.4) over a mix of reasoning problems (reasoning_rewards, or the `reasoning` reward
    function given) and general prompts (general_rewards); each reply's reward in its place, the parts of both."""
    reasoning = reasoning or partial(reasoning_rewards, lang_weight=lang_weight)
    is_problem = [isinstance(item, Problem) for item in items]
    r_rows = [i for i, p in enumerate(is_problem) if p]
    g_rows = [i for i, p in enumerate(is_problem) if not p]
    r_rewards, r_parts = reasoning([replies[i] for i in r_rows], [items[i] for i in r_rows])
    g_rewards, g_parts = general_rewards([replies[i] for i in g_rows], [items[i] for i in g_rows], score)
    rewards = [0.0] * len(replies)
    for i, r in zip(r_rows + g_rows, r_rewards + g_rewards):
        rewards[i] = r
    return rewards, {**r_parts, **g_parts}
