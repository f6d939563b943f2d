"""pass@k, cons@k and the scoring of samples, against brute force and hand-worked cases."""

import itertools
import math

import pytest

from r1mini.evaluate import Sampled, majority_vote, markdown_table, pass_at_k, score
from r1mini.tasks import get_task


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """The share of all k-subsets of n samples (the first c correct) holding at least one correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.assignment9
@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


@pytest.mark.assignment9
def test_pass_at_k_edges():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the share correct
    assert pass_at_k(10, 0, 10) == 0.0 and pass_at_k(10, 1, 10) == 1.0
    assert pass_at_k(200, 199, 2) == 1.0 and pass_at_k(200, 1, 200) == 1.0  # fewer wrong samples than k


def test_pass_at_k_rejects_impossible_counts():
    for bad in [(4, 5, 1), (4, 1, 5), (4, 1, 0), (4, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


@pytest.mark.assignment9
def test_majority_vote_ties_and_blanks():
    # a tie goes to the answer seen first; none of these reads the same backwards, so "seen last" (or the
    # answer whose first appearance is last, or the first to reach the top count) gives another answer
    assert majority_vote(["9", "1", "9", "1"]) == "9"
    assert majority_vote(["1", "9", "1", "9"]) == "1"  # the smaller string, or the larger one, is no rule
    assert majority_vote(["7", "2", "2", "5", "7"]) == "7"  # "2" reached 2 votes first, "7" came first
    assert majority_vote([None, "7", "", None]) == "7"  # no answer (None or "") is not a vote
    assert majority_vote([None, ""]) is None and majority_vote([]) is None
    assert majority_vote(["1", "2", "2", "1", "2"]) == "2"


def completion(answer: str) -> str:
    return f"<think>working</think><answer>{answer}</answer>"


def test_score_cons_at_k_with_ties():
    add = get_task("add")
    rng = __import__("random").Random(0)
    p = add.sample(rng)
    right, wrong = p.answer, str(int(p.answer) + 1)
    cases = {  # completions -> (pass@1, cons@4)
        (right, wrong, right, wrong): (0.5, 1.0),  # tie, the right answer came first
        (wrong, right, wrong, right): (0.5, 0.0),  # tie, the wrong one came first
        (wrong, wrong, right, "x"): (0.25, 0.0),
        (right, "", "", wrong): (0.25, 1.0),  # empty answers do not vote
    }
    for answers, (p1, cons) in cases.items():
        r = score([Sampled(p, [completion(a) for a in answers], [5, 6, 7, 8])], 4)
        assert r["pass@1"] == pytest.approx(p1) and r["cons@4"] == cons, answers
        assert r["pass@4"] == pytest.approx(pass_at_k(4, round(4 * p1), 4))
        assert r["length"] == 6.5  # tokens when the lengths are known
    r = score([Sampled(p, [completion(right)] * 2 + ["no tags at all", completion(wrong)], None)], 4)
    assert r["format"] == 0.75 and r["length"] == r["chars"] > 6.5  # characters when they are not
    # pooled over problems: means of the per-problem values
    r = score([Sampled(p, [completion(right)] * 4), Sampled(p, [completion(wrong)] * 4)], 4)
    assert r["pass@1"] == 0.5 and r["cons@4"] == 0.5 and r["pass@4"] == 0.5


def test_markdown_table():
    table = markdown_table(["a", "b"], [["x", 0.12345], ["y", 2]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x | 0.123 |", "| y | 2 |"]
    assert math.isclose(float(table.splitlines()[2].split("|")[2]), 0.123)
