"""Tests for r1mini.filters: each rejection-sampling filter on hand-made positives and negatives, the clean
solutions of every task passing all of them, and rejection_filter's counts adding up."""

import random

import pytest

from r1mini.filters import FILTERS, has_code_block, mixed_language, overlong_paragraph, rejection_filter, repeats
from r1mini.formats import reasoning_reply
from r1mini.tasks import suite

EN = reasoning_reply("Add digit by digit from the right. 12 + 35: 2 + 5 = 7, so far 7. 1 + 3 = 4, so far 47.",
                     "47", "en")
ZH = reasoning_reply("两边减 31：7x = 143 - 31 = 112。 两边除以 7：x = 112 / 7 = 16。", "16", "zh")


@pytest.mark.assignment10
@pytest.mark.parametrize("text, expected", [
    (EN, False),
    (ZH, False),  # the tags and the x of the equation are not English words
    ("12 + 35 = 47", False),
    ("The sum is 47, 对吗？", True),
    (reasoning_reply("从右往左逐位相加。 2 + 5 = 7, so far 7.", "7", "en"), True),
    ("Tarn 在 Olo 河边。", True),  # names count: the filter is for reasoning text
    ("so far 目前", True),
    ("so far 123", False),
    ("<think> 目前是 5 </think> <answer> 5 </answer>", False),  # the tags are not English
])
def test_mixed_language(text, expected):
    assert mixed_language(text) is expected


def test_overlong_paragraph_measures_each_line():
    assert not overlong_paragraph("a" * 400)
    assert overlong_paragraph("a" * 401)
    assert not overlong_paragraph(("a" * 300 + "\n") * 5)
    assert not overlong_paragraph(("a" * 300 + "\n\n") * 5)
    assert overlong_paragraph("short\n\n" + "b" * 500 + "\nshort")
    assert overlong_paragraph("x" * 60, max_chars=50) and not overlong_paragraph("x" * 50, max_chars=50)


@pytest.mark.parametrize("text, expected", [
    ("```python\nx = 1\n```", True),
    ("Here: ```47```", True),
    ("<think>\n    def add(a, b):\n        return a + b\n</think>", True),
    ("import math\nmath.sqrt(4)", True),
    ("from fractions import Fraction", True),
    ("print(12 + 35)", True),
    ("class Adder:\n    pass", True),
    (EN, False),
    ("I will print the answer: 47. Import duties are a different matter.", False),
    ("We come from Tarn, a town on the river Olo.", False),
])
def test_has_code_block(text, expected):
    assert has_code_block(text) is expected


@pytest.mark.assignment10
@pytest.mark.parametrize("text, expected", [
    ("Let me check. " * 3, True),
    ("Let me check. " * 2, False),
    ("等等，检查一下。" * 3, True),
    ("1 + 1 = 2. 1 + 1 = 2. 1 + 1 = 2.", True),
    ("OK. OK. OK. OK.", False),  # too short to be a loop
    # an 8-word run repeated inside longer, different sentences
    ("so the sum of these two numbers is 47 and " * 3, True),
    ("a " + "so the sum of these two numbers is, " * 2, False),
    (EN, False),
    # legit column arithmetic repeats digits and symbols, never whole sentences
    (reasoning_reply("Multiply digit by digit from the right. 111 × 8: 1 × 8 = 8, so far 8. 11 × 8: 1 × 8 = 8, "
                     "so far 88. 1 × 8: 1 × 8 = 8, so far 888. The product is 888.", "888", "en"), False),
])
def test_repeats(text, expected):
    assert repeats(text) is expected


@pytest.mark.assignment10
def test_repeats_threshold():
    assert repeats("Let me check. " * 2, n=2) and not repeats("Let me check. " * 4, n=5)


@pytest.mark.assignment10
def test_clean_task_solutions_pass_every_filter():
    rng = random.Random(0)
    for preset in ("cpu", "gpu"):
        for name, task in suite(preset).items():
            for _ in range(30):
                lang = rng.choice(["en", "zh"])
                problem = task.sample(rng, "train", lang)
                for style in ("direct", "steps", "reflect"):
                    reply = reasoning_reply(*task.solution(problem, style, lang, rng), lang)
                    failed = [n for n, f in FILTERS if n != "overlong" and f(reply)]
                    assert not failed, (failed, reply)


@pytest.mark.assignment10
def test_rejection_filter_counts_add_up():
    clean = [{"prompt": f"p{i}", "completion": reasoning_reply(f"{i} + 1 = {i + 1}.", str(i + 1), "en"),
              "correct": True} for i in range(3)]
    bad = [
        {"prompt": "q", "completion": EN, "correct": False},
        {"prompt": "q", "completion": "The sum 是 47.", "correct": False},  # incorrect first: counted once
        {"prompt": "q", "completion": "The sum 是 47.", "correct": True},
        {"prompt": "q", "completion": "w" * 500, "correct": True},
        {"prompt": "q", "completion": "```\nprint(47)\n```", "correct": True},
        {"prompt": "q", "completion": "Let me check. " * 5, "correct": True},
    ]
    dup = [dict(clean[0]), dict(clean[0], completion="  " + clean[0]["completion"].replace(" ", "  ")),
           dict(clean[1], prompt="another prompt")]  # same text, another prompt: not a duplicate
    kept, counts = rejection_filter(clean + bad + dup)
    assert counts == {"total": 12, "correct": 2, "mixed_language": 1, "overlong": 1, "code": 1, "repetition": 1,
                      "duplicate": 2, "kept": 4}
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert kept == clean + [dup[2]]
    assert rejection_filter([]) == ([], {k: 0 for k in counts})


@pytest.mark.assignment10
def test_rejection_filter_counts_each_sample_once_under_its_first_failure():
    mixed_loop = "The sum 是 47. " * 3  # fails mixed_language and repetition: counted under the first only
    code = "```\nprint(47)\n```"
    good = reasoning_reply("1 + 1 = 2.", "2", "en")
    samples = [{"prompt": "q", "completion": mixed_loop, "correct": True},
               {"prompt": "q", "completion": code, "correct": True},
               {"prompt": "q", "completion": code, "correct": True},  # a duplicate of a removed sample: "code" again
               {"prompt": "q", "completion": good, "correct": False},  # a wrong one first does not claim the text
               {"prompt": "q", "completion": good, "correct": True},
               {"prompt": "q", "completion": good, "correct": False}]  # a duplicate, but wrong: "correct"
    assert mixed_language(mixed_loop) and repeats(mixed_loop)
    kept, counts = rejection_filter(samples)
    assert counts == {"total": 6, "correct": 2, "mixed_language": 1, "overlong": 0, "code": 2, "repetition": 0,
                      "duplicate": 0, "kept": 1}
    assert kept == [samples[4]]
