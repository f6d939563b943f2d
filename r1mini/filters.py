"""Rejection-sampling filters: which sampled reasoning replies are good enough to train on (R1 §2.3.3).

DeepSeek-R1 samples its reasoning-RL checkpoint and keeps only correct answers, then "filtered out chain-of-
thought with mixed languages, long paragraphs, and code blocks". We add a check for degenerate loops (the
same sentence again and again), which a small model produces far more often than a large one, and drop
duplicates. Every check is a pure function on one string, so a test can pin it down with hand-made text.
"""
from __future__ import annotations

import re
from collections import Counter

from r1mini.rewards import TAG, language_counts

_ONE_LETTER = re.compile(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])")
_CODE_LINE = re.compile(r"^[ \t]*(?:def \w+\(|class \w+[:(]|import \w|from [\w.]+ import |print\()", re.MULTILINE)
_SENTENCE = re.compile(r"[^.!?。！？\n]+")
_LETTER = re.compile(r"[A-Za-z\u4e00-\u9fff]")
MAX_CHARS = 100_000  # completions are bounded long before this; the bound keeps every check linear and cheap


def mixed_language(text: str) -> bool:
    """Both English words and Chinese characters occur. The R1 tags and one-letter words (the x of an
    equation) are not language; any other Latin word counts, names included, so use it on reasoning text."""
    text = _ONE_LETTER.sub(" ", TAG.sub(" ", text[:MAX_CHARS]))
    en, zh = language_counts(text)
    return en > 0 and zh > 0


def overlong_paragraph(text: str, max_chars: int = 400) -> bool:
    """Some paragraph (a line; blank lines separate nothing more) is longer than max_chars characters."""
    return any(len(line.strip()) > max_chars for line in text[:MAX_CHARS].splitlines())


def has_code_block(text: str) -> bool:
    """A ``` fence, or a line that starts like Python (def f(, class C:, import x, from x import, print().
    Deliberately simple: our tasks never need code, so any of these means the sample wandered off."""
    text = text[:MAX_CHARS]
    return "```" in text or _CODE_LINE.search(text) is not None


def repeats(text: str, n: int = 3, window: int = 8) -> bool:
    """A degenerate loop: one sentence (of at least 4 non-space characters), or one run of `window`
    whitespace-separated words, occurs n or more times. Only runs where most words hold a letter count:
    column arithmetic legitimately repeats "× 8: 1 × 8 = 8, so far" in 111 × 8."""
    text = text[:MAX_CHARS].lower()
    sentences = Counter(" ".join(s.split()) for s in _SENTENCE.findall(text))
    if any(c >= n and len(s.replace(" ", "")) >= 4 for s, c in sentences.items()):
        return True
    words = text.split()
    runs = Counter(" ".join(words[i:i + window]) for i in range(len(words) - window + 1))
    wordy = lambda run: 2 * sum(bool(_LETTER.search(w)) for w in run.split()) > window
    return any(c >= n and wordy(run) for run, c in runs.items())


FILTERS = (("mixed_language", mixed_language), ("overlong", overlong_paragraph), ("code", has_code_block),
           ("repetition", repeats))


def rejection_filter(samples: list[dict], filters=FILTERS) -> tuple[list[dict], dict]:
    """Keep the samples (dicts with prompt, completion, correct) that pass every filter, in order:
    correct -> each of `filters` (by default mixed_language -> overlong -> code -> repetition) -> duplicate
    (same prompt and the same completion up to whitespace; the first one stays).

    Returns (kept, counts), kept the surviving dicts themselves in their order. counts has the keys
    "total", "correct", each filter's name, "duplicate" and "kept": "total" is the number of samples, "kept"
    the number kept, and every other entry the number that check *removed* ("correct": removed as
    incorrect), counted on what the earlier checks let through, so total == kept + the sum of the removals.
    A sample is counted once, under the first check it fails: one that fails two filters counts under the
    earlier, and a copy of a sample removed by a filter is removed (and counted) by that filter too, not as
    a duplicate, since only kept samples are remembered for the duplicate check. No samples: ([], every
    count 0).
    """
    counts = {"total": len(samples), "correct": 0, **{name: 0 for name, _ in filters}, "duplicate": 0, "kept": 0}
    kept, seen = [], set()
    for s in samples:
        if not s["correct"]:
            counts["correct"] += 1
            continue
        failed = next((name for name, check in filters if check(s["completion"])), None)
        if failed is not None:
            counts[failed] += 1
            continue
        key = (s["prompt"], " ".join(s["completion"].split()))
        if key in seen:
            counts["duplicate"] += 1
            continue
        seen.add(key)
        kept.append(s)
    counts["kept"] = len(kept)
    return kept, counts
