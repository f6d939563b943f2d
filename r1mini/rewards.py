"""Rule rewards on completions in the R1-Zero format `<think> ... </think> <answer> ... </answer>`.

One parser serves every consumer (rewards, rejection sampling, evaluation), so a completion means the
same thing everywhere. Everything here reads model output, which is hostile input: regular expressions
with no nested quantifiers, bounded input, no eval.
"""
from __future__ import annotations

import re

from r1mini.tasks import Problem, get_task

MAX_COMPLETION_CHARS = 20_000
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_TAG = re.compile(r"</?(?:think|answer)>")
# exactly one think block, then exactly one non-empty answer block, then nothing but whitespace
_FORMAT = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
REFLECTION_WORDS = ("wait", "check", "verify", "等等", "检查", "验证")
_STEP = re.compile(r"[=＝]")


def _one_of_each_tag(text: str) -> bool:
    # checked before the regexes below: with one tag of each kind their lazy groups match in linear time,
    # whereas hundreds of repeated tags made parse_reasoning_reply's three groups backtrack for seconds
    return all(text.count(tag) == 1 for tag in TAGS)


def parse_completion(completion: str) -> tuple[str, str] | None:
    """(think, answer) of a well-formed completion, or None. Extra, nested or reordered tags -> None."""
    if not isinstance(completion, str) or len(completion) > MAX_COMPLETION_CHARS or not _one_of_each_tag(completion):
        return None
    m = _FORMAT.fullmatch(completion)
    if m is None or _TAG.search(m.group(1)) or _TAG.search(m.group(2)):
        return None
    think, answer = m.group(1).strip(), m.group(2).strip()
    return (think, answer) if answer else None


# R1's chat reply: a think block, then a non-empty readable summary that ends in one answer block
_REPLY = re.compile(r"\s*<think>(.*?)</think>(.*?)<answer>(.*?)</answer>\s*", re.DOTALL)


def parse_reasoning_reply(reply: str) -> tuple[str, str, str] | None:
    """(think, summary, answer) of a well-formed R1 chat reply, or None (extra or misplaced tags too)."""
    if not isinstance(reply, str) or len(reply) > MAX_COMPLETION_CHARS or not _one_of_each_tag(reply):
        return None
    m = _REPLY.fullmatch(reply)
    if m is None or any(_TAG.search(g) for g in m.groups()):
        return None
    think, summary, answer = (g.strip() for g in m.groups())
    return (think, summary, answer) if summary and answer else None


def reply_format_reward(reply: str) -> float:
    """1.0 for `<think>...</think> summary <answer>non-empty</answer>`, else 0.0."""
    return 1.0 if parse_reasoning_reply(reply) is not None else 0.0


def reasoning_text(completion: str) -> str:
    """The think block's text if there is one, else the whole completion (what language is judged on)."""
    start, end = completion.find("<think>"), completion.find("</think>")
    return completion[start + len("<think>"):end] if 0 <= start < end else completion


def extract_answer(completion: str) -> str | None:
    """The text of the answer block: the last `<answer>...</answer>` if any; None when there is none.

    Lenient on purpose (an accuracy reward should not also be a format reward): the answer is found even
    when the think block is missing. format_reward is the strict one.
    """
    if not isinstance(completion, str) or len(completion) > MAX_COMPLETION_CHARS:
        return None
    end = completion.rfind("</answer>")
    start = completion.rfind("<answer>", 0, end if end >= 0 else None)
    if start < 0 or end < 0:
        return None
    answer = completion[start + len("<answer>"):end].strip()
    return answer or None


def format_reward(completion: str) -> float:
    """1.0 for exactly `<think>...</think><answer>non-empty</answer>` (whitespace around is fine), else 0.0."""
    return 1.0 if parse_completion(completion) is not None else 0.0


def accuracy_reward(completion: str, problem: Problem) -> float:
    answer = extract_answer(completion)
    return 1.0 if answer is not None and get_task(problem.task).check(answer, problem) else 0.0


def is_step_by_step(completion: str) -> bool:
    """A completion reasons step by step when its think block holds more than one equation."""
    parsed = parse_completion(completion)
    think = parsed[0] if parsed else completion.split("</think>")[0]
    return len(_STEP.findall(think[:MAX_COMPLETION_CHARS])) > 1


def count_reflection_words(text: str) -> int:
    low = text[:MAX_COMPLETION_CHARS].lower()
    return sum(low.count(w) for w in REFLECTION_WORDS)


# -- language ---------------------------------------------------------------------------------------------
# An English word is a run of Latin letters; Chinese has no spaces, so each Han character counts as a word.
_EN_WORD = re.compile(r"[A-Za-z]+")
_ZH_WORD = re.compile(r"[\u4e00-\u9fff]")


def language_counts(text: str) -> tuple[int, int]:
    """(English words, Chinese words) in text; digits and symbols count for neither."""
    text = text[:MAX_COMPLETION_CHARS]
    return len(_EN_WORD.findall(text)), len(_ZH_WORD.findall(text))


def language_consistency(text: str, lang: str) -> float:
    """Share of the words of `text` that are in `lang` ("en" or "zh") among those in either language
    (the R1 paper's language-consistency reward, §2.3.2). Text with no words of either counts as 1.0."""
    if lang not in ("en", "zh"):
        raise ValueError(f"lang must be 'en' or 'zh', got {lang!r}")
    en, zh = language_counts(text)
    if en + zh == 0:
        return 1.0
    return (en if lang == "en" else zh) / (en + zh)


def zero_reward(completion: str, problem: Problem) -> tuple[float, float]:
    """R1-Zero's rule rewards: (accuracy, format), each 0 or 1; the training reward is their sum."""
    return accuracy_reward(completion, problem), format_reward(completion)
