"""Tests for r1mini.tasks: problems and worked solutions in every style and language, checkers on wrong,
malformed and hostile answers, countdown expressions, the held-out split, determinism."""

import random
import re
import time
from fractions import Fraction

import pytest

from r1mini.rewards import arithmetic_facts
from r1mini.tasks import (CHECK_FINDS_SLIP, CHECK_SLIPS, DEV_PERCENT, HELDOUT_PERCENT, LANGS, MAX_NESTING,
                          SPLITS, STYLES, SUITES, TASKS, Problem, column_check, column_steps, draw_problems,
                          evaluate_expression, get_task, split_of, suite)

HAN = re.compile(r"[\u4e00-\u9fff]")  # Chinese characters
CJK_PUNCT = re.compile(r"[\u3000-\u303f\uff00-\uffef]")  # 。，： and friends
EN_WORD = re.compile(r"[A-Za-z]{2,}")

# every task with its default knobs, a few other difficulty knobs, and every preset suite
CONFIGS = [(name, {}) for name in TASKS] + [
    ("add", dict(min_digits=4, max_digits=5)),
    ("add", dict(min_digits=1, max_digits=1)),
    ("mul", dict(a_digits=(3, 3), b_digits=(2, 2))),  # several multiplier digits: partial products
    ("linear", dict(max_coef=3, max_x=5)),
    ("countdown", dict(n_numbers=3, max_number=10, max_target=50)),
] + [(name, knobs) for preset in ("toy", "cpu", "gpu") for name, knobs in SUITES[preset].items()]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kn.items()) or 'default'}" for n, kn in CONFIGS]


def problems(task, n=25, seed=0, split="train"):
    rng = random.Random(seed)
    return [task.sample(rng, split, lang=rng.choice(["en", "zh"])) for _ in range(n)]


# -- problems and solutions ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,knobs", CONFIGS, ids=IDS)
def test_canonical_answers_and_knobs(name, knobs):
    task = get_task(name, **knobs)
    for p in problems(task, 60):
        assert p.task == name
        assert task.check(p.answer, p), p
        assert task.check(f"  {p.answer}\n", p)
        d = p.data
        if p.lang == "zh":
            assert HAN.search(p.question)
        else:
            assert not HAN.search(p.question) and EN_WORD.search(p.question)
        # the problem honours the knobs and the answer is right by independent arithmetic
        if name == "add":
            lo, hi = knobs.get("min_digits", 2), knobs.get("max_digits", 3)
            assert all(lo <= len(str(d[k])) <= hi for k in "ab")
            assert int(p.answer) == d["a"] + d["b"]
            assert str(d["a"]) in p.question and str(d["b"]) in p.question
        elif name == "mul":
            (alo, ahi), (blo, bhi) = knobs.get("a_digits", (2, 3)), knobs.get("b_digits", (1, 1))
            assert alo <= len(str(d["a"])) <= ahi and blo <= len(str(d["b"])) <= bhi
            assert int(p.answer) == d["a"] * d["b"]
        elif name == "linear":
            assert 2 <= d["a"] <= knobs.get("max_coef", 9) and abs(d["x"]) <= knobs.get("max_x", 20)
            assert 1 <= abs(d["b"]) <= (knobs.get("max_b") or 10 * knobs.get("max_coef", 9))
            assert d["a"] * int(p.answer) + d["b"] == d["c"]
        else:
            assert len(d["numbers"]) == knobs.get("n_numbers", 4)
            assert all(1 <= x <= knobs.get("max_number", 25) for x in d["numbers"])
            assert 1 <= d["target"] <= knobs.get("max_target", 200)
            value, literals = evaluate_expression(p.answer)
            assert value == d["target"] and sorted(literals) == sorted(d["numbers"])
    assert get_task(name) is TASKS[name]  # knobs make a copy, the shared task is untouched
    assert get_task(name, **knobs).__dict__ == {**TASKS[name].__dict__, **knobs}


def step_list(task, p, style, seed):
    """The (en, zh) steps a solution in `style` is made of (the same rng seed draws the same steps)."""
    rng = random.Random(seed)
    steps, answer = task.steps_with_check(p.data, rng) if style == "reflect" else \
        task.steps(p.data, rng, slip=style == "wrong")
    intro = task.intro(p.data)
    return ([intro] if intro else []) + steps, answer


@pytest.mark.parametrize("name,knobs", CONFIGS, ids=IDS)
def test_solutions_in_every_style_and_language(name, knobs):
    task = get_task(name, **knobs)
    for i, p in enumerate(problems(task, 12, seed=1)):
        for style in STYLES:
            for lang in LANGS:
                seed = 1000 * i + 7
                text, answer = task.solution(p, style, lang, random.Random(seed))
                assert isinstance(text, str) and text
                ok = task.check(answer, p)
                assert ok == (style != "wrong"), (style, lang, text, answer)
                if name != "countdown" or style != "wrong":
                    assert answer in text  # the reasoning reaches the answer it gives
                if style == "reflect" and name != "mul":  # multiplication has no check cheap enough
                    assert "Check" in text or "检查" in text
                if lang == "en":
                    assert not HAN.search(text) and not CJK_PUNCT.search(text)
                elif lang == "zh":
                    assert not EN_WORD.search(text), text  # no English words of the templates
                    assert HAN.search(text) if style != "direct" else CJK_PUNCT.search(text)
                elif style != "direct":  # mixed: starts in one language, switches part-way to the other
                    steps, _ = step_list(task, p, style, seed)
                    options = {" ".join([s[a] for s in steps[:cut]] + [s[1 - a] for s in steps[cut:]])
                               for cut in range(1, len(steps)) for a in (0, 1)}
                    if len(steps) == 1:  # countdown's one-line wrong solution cannot switch
                        assert name == "countdown" and style == "wrong"
                        options = set(steps[0])
                    assert text in options, text
                    if name != "countdown":  # countdown's chain steps are bare equations in both languages
                        assert HAN.search(text) and EN_WORD.search(text), text


# -- column arithmetic and its check, as the corpus writes them --------------------------------------------

def test_column_steps_by_hand():
    steps, answer = column_steps(854, 714, "+", random.Random(0), slip=False)
    assert answer == "1568" and " ".join(en for en, _ in steps) == (
        "854+714: 4+4=8, so far 8. 85+71: 5+1=6, so far 68. 8+7: 8+7=15, so far 1568.")
    steps, answer = column_steps(347, 6, "*", random.Random(0), slip=False)
    assert answer == "2082" and " ".join(en for en, _ in steps) == (
        "347×6: 7×6=42, so far 2, carry 4. 34×6: 4×6=24, 24+4=28, so far 82, carry 2. "
        "3×6: 3×6=18, 18+2=20, so far 2082.")
    assert " ".join(zh for _, zh in steps) == ("347×6：7×6=42，目前是 2，进 4。 34×6：4×6=24，24+4=28，目前是 82，进 2。 "
                                              "3×6：3×6=18，18+2=20，目前是 2082。")


def test_column_check_by_hand():
    """The check works the sum again with the numbers swapped and compares each column's digit with the claim
    restated beside the operands, the two side by side before the verdict; it stops at the first that differs."""
    steps, agrees = column_check(854, 714, "+", "1568", random.Random(0), slip=False, words=("Check:", "检查："))
    assert agrees and " ".join(en for en, _ in steps) == (
        "Check: 714+854 vs 1568: 4+4=8, 8 and 8 agree. 71+85 vs 156: 1+5=6, 6 and 6 agree. "
        "7+8 vs 15: 7+8=15, 15 and 15 agree. Right.")
    steps, agrees = column_check(854, 714, "+", "1578", random.Random(0), slip=False, words=("Check:", "检查："))
    assert not agrees and " ".join(en for en, _ in steps) == (
        "Check: 714+854 vs 1578: 4+4=8, 8 and 8 agree. 71+85 vs 157: 1+5=6, 6 and 7 differ.")
    steps, agrees = column_check(347, 6, "*", "2082", random.Random(0), slip=False, words=("Check:", "检查："))
    assert agrees and " ".join(en for en, _ in steps) == (
        "Check: 6×347 vs 2082: 6×7=42, 2 and 2 agree. 6×34 vs 208: 6×4=24, 24+4=28, 8 and 8 agree. "
        "6×3 vs 20: 6×3=18, 18+2=20, 20 and 20 agree. Right.")
    _, agrees = column_check(347, 6, "*", "12082", random.Random(0), slip=False, words=("Check:", "检查："))
    assert not agrees  # a digit too many shows in the last column


@pytest.mark.parametrize("op", ["+", "*"])
def test_a_slip_is_one_wrong_fact_as_the_base_makes_them(op):
    """A slip is what the base model was measured to do: one fact wrong (in addition most often one short where a
    carry came in, in multiplication most often the carry added wrong), every operand and carry copied right. It
    gives a wrong answer that the clean check catches; the check's own slip makes it disagree with a right one."""
    rng, short_of_carry, carried = random.Random(0), 0, 0
    for _ in range(300):
        a, b = (rng.randint(100, 999), rng.randint(100, 999)) if op == "+" else \
            (rng.randint(10, 999), rng.randint(2, 9))
        right = str(a + b if op == "+" else a * b)
        steps, answer = column_steps(a, b, op, rng, slip=True)
        text = " ".join(en for en, _ in steps)
        wrong = [f for f, ok in arithmetic_facts(text) if not ok]
        assert answer != right and len(wrong) == 1, text
        clean = " ".join(en for en, _ in column_steps(a, b, op, rng, slip=False)[0])
        heads = lambda s: re.findall(r"(\d+[+×]\d+):", s)  # noqa: E731
        assert heads(text) == heads(clean)  # the operands restated right
        if op == "+" and wrong[0].count("+") == 2:
            carried += 1
            x, y, c, v = map(int, re.findall(r"\d+", wrong[0]))
            short_of_carry += v == x + y
        assert not column_check(a, b, op, answer, rng, slip=False, words=("Check:", "检查："))[1]
        assert not column_check(a, b, op, right, rng, slip=True, words=("Check:", "检查："))[1]
    if op == "+":
        assert 0.65 < short_of_carry / carried < 0.92  # CARRY_NOT_ADDED, plus half of the rest one short: 0.8


@pytest.mark.parametrize("name", ["add", "mul", "linear", "countdown"])
def test_a_check_confirms_a_right_first_pass_and_catches_a_slipped_one(name):
    """Reflection as people do it: the check goes by another route at the same granularity; on a right answer
    it agrees (every fact in it right, "Right", no "Wait"); on a slipped one it disagrees. A reflect solution
    always ends right; its first pass and check disagree in about CHECK_FINDS_SLIP + CHECK_SLIPS of them, and
    then "Wait" and a second, clean pass follow."""
    task, disagreements, n = TASKS[name], 0, 0
    route = {"add": "Check by swapping", "mul": "Check by swapping", "linear": "Check x=", "countdown": "Check: "}[name]
    for i, p in enumerate(problems(task, 200, seed=3)):
        more, agrees = task.check_steps(p.data, p.answer, random.Random(i))
        text = " ".join(en for en, _ in more)
        assert text.startswith(route) and agrees and "Right" in text and "Wait" not in text
        assert all(ok for _, ok in arithmetic_facts(text)), text
        first, first_answer = task.steps(p.data, random.Random(i), slip=True)
        if not task.check(first_answer, p):  # countdown's slip may still land on the target
            more, agrees = task.check_steps(p.data, first_answer, random.Random(i))
            assert not agrees and "Right" not in " ".join(en for en, _ in more)
        solution, final = task.solution(p, "reflect", "en", random.Random(i))
        assert task.check(final, p) and solution.count("Check") == 1
        if "Wait" in solution:
            again = solution[solution.index("Wait"):]
            assert all(ok for _, ok in arithmetic_facts(again)), again  # the second pass is clean
        disagreements, n = disagreements + ("Wait" in solution), n + 1
    share = CHECK_FINDS_SLIP + (CHECK_SLIPS if name != "countdown" else 0)  # countdown's check cannot slip
    assert abs(disagreements / n - share) < 0.1


@pytest.mark.parametrize("name", TASKS)
def test_wrong_style_is_wrong_and_reflect_recovers(name):
    task = TASKS[name]
    for i, p in enumerate(problems(task, 40, seed=2)):
        _, wrong = task.solution(p, "wrong", "en", random.Random(i))
        _, fixed = task.solution(p, "reflect", "zh", random.Random(i))
        assert not task.check(wrong, p) and task.check(fixed, p)
    with pytest.raises(ValueError):
        task.solution(p, "sloppy", "en", random.Random(0))
    with pytest.raises(ValueError):
        task.solution(p, "steps", "fr", random.Random(0))
    with pytest.raises(ValueError, match="split"):
        task.sample(random.Random(0), "validation")


def test_unknown_task_and_suite():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("division")
    with pytest.raises(ValueError, match="unknown suite"):
        suite("huge")
    assert set(suite("gpu")) == set(TASKS)
    assert suite("toy")["add"].max_digits == 2


# -- checkers ------------------------------------------------------------------------------------------

def fixed_problem(name: str) -> Problem:
    if name == "countdown":
        return Problem("countdown", "q", "en", "1 + 2 + 3 + 4",
                       {"numbers": [1, 2, 3, 4], "target": 10, "expr": "1 + 2 + 3 + 4", "chain": []})
    if name == "linear":
        return Problem("linear", "q", "en", "5", {"a": 2, "b": 3, "x": 5, "c": 13})
    return Problem(name, "q", "en", "123", {"a": 100, "b": 23} if name == "add" else {"a": 41, "b": 3})


@pytest.mark.parametrize("name", [n for n in TASKS if n != "countdown"])
def test_integer_checkers(name):
    task, p = TASKS[name], fixed_problem(name)
    good = p.answer
    assert task.check(good, p) and task.check(f" {good} ", p) and task.check(f"\n{good}\t", p)
    for bad in [str(int(good) + 1), str(int(good) - 1), "", " ", "abc", f"{good}abc", f"{good} 1", f"1 {good}",
                f"{good}.0", f"+{good}", f"{good},", f"({good})", f"--{good}", "None", "null", f"{good}\x00"]:
        assert task.check(bad, p) is False, bad
    assert task.check(f"0{good}", p)  # a leading zero is still the same integer
    if name == "linear":
        assert task.check(f"x = {good}", p) and task.check(f"x={good}", p) and task.check(f" x  =  {good} ", p)
        assert not task.check(f"y = {good}", p) and not task.check(f"x = {int(good) + 1}", p)
        assert not task.check(f"x == {good}", p)
        zero = Problem("linear", "q", "en", "0", {"a": 2, "b": 3, "x": 0, "c": 3})
        assert task.check("-0", zero) and task.check("x = 0", zero)
    else:
        assert not task.check(f"x = {good}", p)


def test_countdown_checker():
    task = TASKS["countdown"]
    p = Problem("countdown", "q", "en", "7 + 3 + 5 - 5",
                {"numbers": [5, 5, 3, 7], "target": 10, "expr": "7 + 3 + 5 - 5", "chain": []})
    # the canonical expression and correct alternatives to it
    for good in ["7 + 3 + 5 - 5", "7+3+5-5", "  5 - 5 + 3 + 7 ", "(7 + 3) * 5 / 5", "((7 + 3) / 5) * 5",
                 "(7 + 3) * (5 / 5)"]:
        assert task.check(good, p), good
    for bad in ["7 + 3 + 5",  # a number missing
                "7 + 3 + 5 - 5 + 5 - 5",  # numbers used twice
                "7 + 3 + 6 - 6",  # numbers not given
                "7 + 3 - 5 + 5 * 1",  # an extra 1
                "-5 + 5 + 7 + 3",  # unary minus
                "+7 + 3 + 5 - 5",  # unary plus
                "7 + 3 ** 1 + 5 - 5",  # power
                "7 + 3 + 5 / (5 - 5)",  # division by zero
                "7 + 3 + 5 // 5 + 5 - 5",  # floor division
                "7 + 3 + 5 % 5",  # modulo
                "7 + 3 + 5 - 5 = 10",
                "10", "7 3 5 5", "7 + 3 + 5 - 5 +", "(7 + 3 + 5 - 5", "7 + 3 + 5 - 5)",
                "7.0 + 3 + 5 - 5", "07 + 3 + 5 - 5", "7 + 3 + 5 − 5"]:  # the last: a Unicode minus sign
        assert task.check(bad, p) is False, bad
    # exact arithmetic: 7 / 3 * 3 is exactly 7, no float rounding either way
    q = Problem("countdown", "q", "en", "", {"numbers": [7, 3, 3, 1], "target": 7})
    assert task.check("7 / 3 * 3 * 1", q)
    assert not task.check("7 / 3 * 3 + 1", q)


HOSTILE = ["9**9**9**9", "9 ** 9 ** 9 ** 9", "__import__('os').system('echo hi')", "1/0", "(1/0)", "0/0",
           "1" * 10_000, "(" * 5000 + "1" + ")" * 5000, "(" * 200 + "1" + ")" * 200, "(" * 99 + "1" + ")" * 99,
           "((((((((((((((1))))))))))))))", "١٢٣", "１２３", "²", "123²", "1e309", "1e3", "0x10", "0b1", "1_000",
           "-0", "lambda: 1", "(lambda: 123)()", "b'123'", "b\"\\x00\"", "\x00", "\ufeff123", "123\u200b",
           "+" * 10 ** 6, "-" * 10 ** 6, "9" * 10 ** 6, "1+" * 99 + "1", "1*" * 99 + "1", "999999*" * 24 + "999999",
           "[1, 2]", "{}", "()", "123 # comment", "123; import os", "\n".join(["123"] * 3), "NaN", "inf", "None",
           "True", "-" * 100 + "1", "((" * 20 + "1" + "))" * 20, ")" * 20 + "(" * 20, "1" + " " * 10_000,
           " " * 199 + "1"]


@pytest.mark.parametrize("name", TASKS)
def test_hostile_answers(name):
    task = TASKS[name]
    cases = [(fixed_problem(name), {"-0": False}),
             (Problem(name, "q", "en", "0", {"numbers": [1, 1], "target": 0} if name == "countdown" else {}),
              {"-0": name != "countdown"})]  # "-0" is a correct integer answer when the answer is 0
    for p, truth in cases:
        for text in HOSTILE:
            t0 = time.perf_counter()
            result = task.check(text, p)
            elapsed = time.perf_counter() - t0
            assert result is truth.get(text, False), (text[:50], result)
            assert elapsed < 0.1, (text[:50], elapsed)
        for weird in [None, 123, b"123", ["123"], object()]:  # not even a string
            assert task.check(weird, p) is False


def test_evaluate_expression():
    assert evaluate_expression("1/3 + 2/3") == (Fraction(1), [1, 3, 2, 3])
    assert evaluate_expression("7 / 2") == (Fraction(7, 2), [7, 2])
    assert evaluate_expression("10 - 3 - 2") == (Fraction(5), [10, 3, 2])  # left-associative
    assert evaluate_expression("2 * (3 + 4)") == (Fraction(14), [2, 3, 4])
    assert evaluate_expression(" 2*3+4 ") == (Fraction(10), [2, 3, 4])
    assert evaluate_expression("999999") == (Fraction(999999), [999999])
    nested = "(" * MAX_NESTING + "1" + ")" * MAX_NESTING
    assert evaluate_expression(nested) == (Fraction(1), [1])
    for bad in ["(" + nested + ")", "1000000", "05", "", " ", "1/(2-2)", "2**3", "-1", "+1", "1 2", "(1)(2)",
                "1e3", "x", "2 // 3", "1.5", None, 5]:
        assert evaluate_expression(bad) is None, bad


# -- held-out split, determinism -----------------------------------------------------------------------

@pytest.mark.parametrize("name", TASKS)
def test_heldout_split(name):
    task = TASKS[name]
    rng = random.Random(3)
    keys = {split: {task.key(task.sample(rng, split).data) for _ in range(n)}
            for split, n in (("train", 2000), ("dev", 300), ("test", 300))}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["dev"] and not keys["dev"] & keys["test"]
    assert len(keys["test"]) > 50 and len(keys["dev"]) > 50
    for split in SPLITS:
        assert all(split_of(name, k) == split for k in keys[split])
    draws = [split_of(name, task.key(task.draw(rng))) for _ in range(4000)]
    assert draws.count("test") / len(draws) == pytest.approx(HELDOUT_PERCENT / 100, abs=0.025)
    assert draws.count("dev") / len(draws) == pytest.approx(DEV_PERCENT / 100, abs=0.02)


def test_split_of_is_a_fixed_hash():
    # the split is a pure function of (task, key): no process-dependent hash() that would move problems
    import hashlib
    for task, key in [("add", "12+34"), ("mul", "4*123"), ("countdown", "[1, 2, 3, 4]->10")]:
        bucket = int.from_bytes(hashlib.sha256(f"{task}:{key}".encode()).digest()[:8], "big") % 100
        expected = "test" if bucket < HELDOUT_PERCENT else "dev" if bucket < HELDOUT_PERCENT + DEV_PERCENT else "train"
        assert split_of(task, key) == expected
    keys = [f"{a}+{b}" for a in range(10, 60) for b in range(10, 20)]
    assert [split_of("add", k) for k in keys] != [split_of("mul", k) for k in keys]  # the task is in the hash


def twins(name: str, d: dict) -> list[dict]:
    """The same problem asked another way, by task: a new task must say what its twins are."""
    import itertools
    if name in ("add", "mul"):
        return [{**d, "a": d["b"], "b": d["a"]}]
    if name == "countdown":
        return [{**d, "numbers": list(order)} for order in itertools.permutations(d["numbers"])]
    if name == "linear":  # a x + b = c has one form: the data is the equation's coefficients
        return [dict(d)]
    raise AssertionError(f"say in tests/test_tasks.py what a twin of a {name!r} problem is")


@pytest.mark.parametrize("name", TASKS)
def test_no_test_problem_has_a_twin_in_another_split(name):
    """Commuted operands, reordered countdown numbers: one key, so one split; every generator, at every
    suite's difficulty."""
    rng = random.Random(5)
    for task in [TASKS[name]] + [t for s in SUITES for n, t in suite(s).items() if n == name]:
        for _ in range(300):
            d = task.draw(rng)
            assert all(task.key(t) == task.key(d) for t in twins(name, d)), d
    add = TASKS["add"]
    assert add.key({"a": 12, "b": 345}) == add.key({"a": 345, "b": 12}) != add.key({"a": 12, "b": 346})


@pytest.mark.parametrize("name", TASKS)
def test_seeded_determinism(name):
    task = TASKS[name]
    assert problems(task, 20, seed=5) == problems(task, 20, seed=5)
    assert problems(task, 20, seed=5) != problems(task, 20, seed=6)
    p = problems(task, 1, seed=5)[0]
    assert task.solution(p, "reflect", "mixed", random.Random(9)) == task.solution(p, "reflect", "mixed",
                                                                                    random.Random(9))


@pytest.mark.parametrize("preset, zh_share", [("toy", 0.2), ("cpu", 0.5), ("gpu", 0.0), ("gpu", 1.0)])
def test_draw_problems_draws_what_the_inline_loop_drew(preset, zh_share):
    """draw_problems replaced a one-line loop in each training script; a run resumed across that change must
    draw the same problems from the same RNG state and leave the RNG where the loop left it."""
    tasks = suite(preset)
    rng, reference = random.Random(7), random.Random(7)
    got = draw_problems(rng, tasks, 40, zh_share)
    want = [reference.choice(list(tasks.values())).sample(reference, "train", "zh" if reference.random() < zh_share
                                                          else "en") for _ in range(40)]
    assert [(p.task, p.question, p.lang, p.answer) for p in got] == [(p.task, p.question, p.lang, p.answer)
                                                                     for p in want]
    assert got == want
    assert rng.getstate() == reference.getstate()
    # not a degenerate draw: every task of the suite, the languages zh_share asks for, training problems only
    assert {p.task for p in got} == set(tasks)
    assert {p.lang for p in got} == ({"en"} if zh_share == 0 else {"zh"} if zh_share == 1 else {"en", "zh"})
    assert all(split_of(p.task, tasks[p.task].key(p.data)) == "train" for p in got)


def test_draw_problems_split_and_count():
    tasks = suite("cpu")
    test = draw_problems(random.Random(3), tasks, 30, 0.5, split="test")
    assert len(test) == 30 and all(split_of(p.task, tasks[p.task].key(p.data)) == "test" for p in test)
    assert draw_problems(random.Random(3), tasks, 0, 0.5) == []
