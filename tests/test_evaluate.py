"""pass@k, cons@k and the scoring of samples, against brute force and hand-worked cases."""

import itertools
import math

import pytest

from r1mini.config import UserError
from r1mini.evaluate import majority_vote, pass_at_k, score
from r1mini.sampling import Sampled
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


def test_votes_are_on_normalised_answers():
    """0579 and 579 are one answer; so are two correct countdown expressions, and x = 7 and 7."""
    import random
    assert majority_vote(["0579", "580", "579"], key=lambda a: str(int(a))) == "0579"  # the first of the winner
    assert majority_vote(["0579", "580", "579"]) == "0579"  # raw strings: a three-way tie, the first wins
    add, rng = get_task("add"), random.Random(0)
    p = add.sample(rng)
    right, wrong = p.answer, str(int(p.answer) + 1)
    r = score([Sampled(p, [completion(a) for a in (wrong, "0" + right, "00" + right, right)])], 4)
    assert r["cons@4"] == 1.0  # raw strings: four answers once each, and the first, wrong, would win
    cd = get_task("countdown")
    q = cd.sample(rng)
    a, b, c, d = q.data["numbers"]
    assert cd.normalize(q.answer, q) == f"= {q.data['target']}" == cd.normalize(f" {q.answer} ", q)
    assert cd.normalize(f"{a} + {b} + {c} + {d}", q) == f"= {a + b + c + d}"
    assert cd.normalize(f"{a} + {b}", q) == f"{a} + {b}"  # not all the numbers: as written
    lin = get_task("linear")
    e = lin.sample(rng)
    assert lin.normalize(f"x = {e.answer}", e) == lin.normalize(f" {e.answer}", e) == str(int(e.answer))


def test_heldout_problems_are_distinct_across_languages_and_from_their_split():
    from r1mini.evaluate import heldout_problems
    from r1mini.tasks import split_of, suite
    tasks = suite("cpu")
    for split, n in (("dev", 60), ("test", 140)):  # linear-eq has 287 test problems and 122 dev ones
        en = heldout_problems(tasks, n, seed=0, lang="en", split=split)
        zh = heldout_problems(tasks, n, seed=0, lang="zh", split=split)
        m = len(tasks) * n  # per language: n of every task
        assert [p.lang for p in en + zh] == ["en"] * m + ["zh"] * m
        keys = [(p.task, tasks[p.task].key(p.data)) for p in en + zh]
        assert len(set(keys)) == len(keys) == 2 * m  # no problem twice, none in both languages
        assert all(split_of(*k) == split for k in keys)
        assert heldout_problems(tasks, n, seed=0, lang="en", split=split) == en  # the same for every model
    dev, test = (heldout_problems(tasks, 50, seed=0, split=s) for s in ("dev", "test"))
    assert not {p.question for p in dev} & {p.question for p in test}
    with pytest.raises(ValueError, match="dev or the test split"):
        heldout_problems(tasks, 5, seed=0, split="train")
    with pytest.raises(UserError, match="found only .* distinct test problems"):
        heldout_problems(suite("toy"), 5000, seed=0, split="test")  # 1-2 digit sums: a few hundred in test


def test_bootstrap_intervals():
    """Against the normal approximation for a share, and invariants of pairing."""
    from r1mini.evaluate import bootstrap_ci
    values = [1.0] * 300 + [0.0] * 100  # a share of 0.75 over 400 problems
    lo, hi = bootstrap_ci(values)
    half = 1.96 * math.sqrt(0.75 * 0.25 / 400)  # 0.042
    assert lo == pytest.approx(0.75 - half, abs=0.01) and hi == pytest.approx(0.75 + half, abs=0.01)
    assert bootstrap_ci([0.4] * 50) == pytest.approx([0.4, 0.4])
    assert bootstrap_ci(values, seed=1) != [lo, hi] and bootstrap_ci(values) == [lo, hi]  # seeded
    # two checkpoints on the same problems, one right exactly where the other is, plus one more problem:
    better = values[:]
    better[300] = 1.0
    assert bootstrap_ci(better, minus=values) == pytest.approx([0.0, 0.005], abs=0.0026)  # paired: tight
    lo, hi = bootstrap_ci(better, minus=values, paired=False)  # as if independent: about sqrt(2) x half wide
    assert lo < -0.04 and hi > 0.04
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    with pytest.raises(ValueError, match="same problems"):
        bootstrap_ci([1.0, 0.0], minus=[1.0])


def test_score_gives_intervals_and_per_problem_values():
    import random
    add = get_task("add")
    rng = random.Random(1)
    problems = [add.sample(rng) for _ in range(40)]
    samples = [Sampled(p, [completion(p.answer if i % 4 == 0 else "0")] * 2 + [completion("0")] * 2)
               for i, p in enumerate(problems)]  # every fourth problem: 2 of 4 right, and cons by first-seen tie
    r = score(samples, 4)
    assert r["per_problem"]["pass@1"] == [0.5 if i % 4 == 0 else 0.0 for i in range(40)]
    assert r["per_problem"]["cons@4"] == [1.0 if i % 4 == 0 else 0.0 for i in range(40)]
    assert r["pass@1"] == 0.125 and r["pass@1_ci"][0] < 0.125 < r["pass@1_ci"][1]
    assert r["cons@4_ci"][0] < 0.25 < r["cons@4_ci"][1] and r["cons@4_ci"][1] - r["cons@4_ci"][0] > 0.2


def test_accuracy_with_and_without_reflection():
    import random
    add = get_task("add")
    p = add.sample(random.Random(2))
    wrong = str(int(p.answer) + 1)
    reflect = lambda a: f"<think>1 + 1 = 3. Wait, let me check: 1 + 1 = 2.</think><answer>{a}</answer>"  # noqa: E731
    r = score([Sampled(p, [reflect(p.answer), reflect(wrong), completion(p.answer), completion(wrong),
                           completion(wrong)])], 5)
    assert (r["reflect_share"], r["reflect_acc"], r["plain_share"]) == (0.4, 0.5, 0.6)
    assert r["plain_acc"] == pytest.approx(1 / 3)
    assert r["per_problem"]["reflect_acc"] == [0.5] and r["per_problem"]["plain_acc"] == [pytest.approx(1 / 3)]
    r = score([Sampled(p, [completion(p.answer)]), Sampled(p, [reflect(wrong)])], 1)
    assert r["reflect_acc"] == 0.0 and r["plain_acc"] == 1.0
    assert r["per_problem"]["reflect_acc"] == [None, 0.0] and r["per_problem"]["plain_acc"] == [1.0, None]
    r = score([Sampled(p, [completion(p.answer)])], 1)
    assert math.isnan(r["reflect_acc"]) and r["plain_acc"] == 1.0  # no reply reflected: undefined, not 0
