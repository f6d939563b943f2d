"""Synthetic reasoning tasks with exact verifiers: addition, multiplication, linear equations, countdown.

Each task draws problems from a seeded `random.Random`, writes worked solutions in several styles, and
checks an answer string (`check`). The styles are what the small-scale experiment needs (docs/results.md,
"How the small-scale experiment is set up"):

- "direct": the answer at once. A small model is bad at this, which leaves RL something better to find.
- "steps": one small step per line of thought (column by column, with a running partial result).
- "reflect": steps, then a check of the answer by another route at the same granularity (`check_steps`: add
  again column by column with the numbers swapped, multiply again with the factors swapped, put x back with
  the facts the solution wrote, recompute the expression), as people check: the first pass is usually right
  and the check agrees and stops; when one of the two slipped, they disagree, and "wait" and a clean second
  pass follow (`steps_with_check`). Tasks without a check (`check_steps` returns None) write plain steps.
- "wrong": steps with an uncorrected slip, so the answer is wrong (pretraining text is not all clean).
Solutions are written in English or Chinese, or switch language part-way ("mixed").

Checking never executes model text. Integers are matched with an ASCII-only regular expression; countdown
expressions are parsed with `ast` into a whitelist (integer literals, + - * /, parentheses) of bounded
length and depth, then evaluated exactly with Fractions.

Splits: a hash of a problem's canonical key puts it in "test" (HELDOUT_PERCENT of problems: the final
evaluation, eval.py), "dev" (DEV_PERCENT: everything watched or tuned during training, the pretraining
validation loss included) or "train" (the rest: the corpus, every RL prompt, every SFT example). Keys are
canonical: one problem asked two ways (b + a for a + b, the countdown numbers in another order) has one key,
so no test problem has a twin in any training path.
"""
from __future__ import annotations

import ast
import hashlib
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction

from r1mini.config import ConfigError, UserError, import_named

HELDOUT_PERCENT = 10  # test
DEV_PERCENT = 5
SPLITS = ("train", "dev", "test")
STYLES = ("direct", "steps", "reflect", "wrong")
LANGS = ("en", "zh", "mixed")
MAX_ANSWER_CHARS = 200
CHECK_FINDS_SLIP = 0.3  # share of "reflect" solutions whose first pass slipped, so that the check disagrees
CHECK_SLIPS = 0.1  # share of "reflect" solutions whose check slipped (a second pass then confirms the first)

_INT = re.compile(r"-?[0-9]{1,30}", re.ASCII)
_LINEAR_ANSWER = re.compile(r"(?:x\s*=\s*)?(-?[0-9]{1,30})", re.ASCII)


@dataclass
class Problem:
    task: str
    question: str
    lang: str  # language of the question, "en" or "zh"
    answer: str  # a canonical correct answer
    data: dict = field(default_factory=dict)  # operands, for writing solutions
    # the Task that made it, which checks its answers (your own suite's too: task_files.task_for); None: the
    # one called `task`
    maker: Task | None = field(default=None, repr=False, compare=False)


def split_of(task: str, key: str) -> str:
    h = int.from_bytes(hashlib.sha256(f"{task}:{key}".encode()).digest()[:8], "big")
    bucket = h % 100
    return "test" if bucket < HELDOUT_PERCENT else "dev" if bucket < HELDOUT_PERCENT + DEV_PERCENT else "train"


def parse_int(answer: str) -> int | None:
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return None
    m = _INT.fullmatch(answer.strip())
    return int(m.group()) if m else None


def _say(lang: str, en: str, zh: str) -> str:
    return zh if lang == "zh" else en


class Task:
    """One kind of problem. Subclasses define draw, key, question, solve and the worked steps."""
    name = "task"

    def sample(self, rng: random.Random, split: str = "train", lang: str = "en") -> Problem:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        for _ in range(10_000):
            data = self.draw(rng)
            if split_of(self.name, self.key(data)) == split:
                return self.problem(data, lang, rng)
        raise RuntimeError(f"{self.name}: no {split} problem found; is the problem space too small?")

    def problem(self, data: dict, lang: str, rng: random.Random) -> Problem:
        """The problem `data` holds, asked in lang (the wording drawn from rng)."""
        return Problem(self.name, self.question(data, lang, rng), lang, self.solve(data), data, maker=self)

    def distinct(self, rng: random.Random, split: str, n: int) -> list[dict]:
        """n problems of the split, all different (by canonical key): draws without replacement."""
        seen, out, misses = set(), [], 0
        while len(out) < n and misses < 50_000:  # 50,000 draws in a row without a new one: the split is spent
            data = self.draw(rng)
            key = self.key(data)
            misses += 1
            if key not in seen and split_of(self.name, key) == split:
                seen.add(key)
                out.append(data)
                misses = 0
        if len(out) == n:
            return out
        raise UserError(f"{self.label}: found only {len(out)} distinct {split} problems of the {n} asked for; ask "
                        f"for fewer (n_problems, eval_problems) or make the task harder")

    @property
    def label(self) -> str:
        """The benchmark name of this task at its difficulty, e.g. add-3d, mul-3x1, countdown-4."""
        return self.name

    def check(self, answer: str, problem: Problem) -> bool:
        try:
            value = parse_int(answer)
            return value is not None and value == int(problem.answer)
        except Exception:  # a checker is called on model output: it must never raise
            return False

    def normalize(self, answer: str, problem: Problem) -> str:
        """The answer in a canonical form, for majority votes: answers that mean the same (0579 and 579) are
        one vote. An integer's digits; anything else as written, stripped."""
        value = parse_int(answer)
        return answer.strip() if value is None else str(value)

    def solution(self, problem: Problem, style: str, lang: str, rng: random.Random) -> tuple[str, str]:
        """A worked solution: (reasoning text, the answer it reaches). lang "mixed" switches part-way."""
        if style not in STYLES or lang not in LANGS:
            raise ValueError(f"style must be in {STYLES} and lang in {LANGS}")
        if style == "direct":
            return self.direct(problem.data, "zh" if lang == "zh" else "en"), problem.answer
        steps, answer = self.steps_with_check(problem.data, rng) if style == "reflect" else \
            self.steps(problem.data, rng, slip=style == "wrong")
        intro = self.intro(problem.data)
        steps = ([intro] if intro else []) + steps
        if lang == "mixed":  # start in one language, finish in the other
            first = rng.choice(["en", "zh"])
            cut = rng.randint(1, max(1, len(steps) - 1))
            langs = [first] * cut + [("zh" if first == "en" else "en")] * (len(steps) - cut)
        else:
            langs = [lang] * len(steps)
        return " ".join(_say(lg, en, zh) for (en, zh), lg in zip(steps, langs)), answer

    INTRO: tuple[str, str] | None = None  # (en, zh) words before the steps, naming the method
    AGAIN = ("Wait, solve it again.", "等等，重新算一遍。")  # after a check that disagrees, before the second pass

    def steps_with_check(self, data: dict, rng: random.Random) -> tuple[list, str]:
        """Reflection as people do it: the steps, then a check of their answer (check_steps). The first pass is
        usually right and the check agrees and stops; in CHECK_FINDS_SLIP of these solutions the first pass
        slipped, and in CHECK_SLIPS the check did: either way the two disagree, and "wait" and a clean second
        pass follow, whose answer stands. Plain steps for a task without a check."""
        u = rng.random()
        first_slips, check_slips = u < CHECK_FINDS_SLIP, CHECK_FINDS_SLIP <= u < CHECK_FINDS_SLIP + CHECK_SLIPS
        steps, answer = self.steps(data, rng, slip=first_slips)
        check = self.check_steps(data, answer, rng, slip=check_slips)
        if check is None:
            return self.steps(data, rng, slip=False)
        more, agrees = check
        if agrees:
            return steps + more, answer
        again, right = self.steps(data, rng, slip=False)
        return steps + more + [self.AGAIN] + again, right

    def intro(self, data: dict) -> tuple[str, str] | None:
        """What the steps start with, naming the method (INTRO): said once, not again after "wait"."""
        return self.INTRO

    def check_steps(self, data: dict, answer: str, rng: random.Random, slip: bool = False) -> tuple[list, bool] | None:
        """A check of `answer` by another route at the solution's own granularity: (en, zh) steps that end in
        the verdict ("Right." when it agrees, "not ..." where it first disagrees), and whether it agrees. slip:
        the check itself slips once (so it disagrees with a right answer). None: the task has no check (its
        "reflect" solutions are plain steps)."""
        return None

    # subclasses
    def draw(self, rng: random.Random) -> dict: raise NotImplementedError
    def key(self, data: dict) -> str: raise NotImplementedError
    def question(self, data: dict, lang: str, rng: random.Random) -> str: raise NotImplementedError
    def solve(self, data: dict) -> str: raise NotImplementedError
    def direct(self, data: dict, lang: str) -> str: raise NotImplementedError
    def steps(self, data: dict, rng: random.Random, slip: bool) -> tuple[list, str]:
        """(en, zh) pairs, one a step, and the answer they reach; slip: one step is off, and so is the answer."""
        raise NotImplementedError


# -- column arithmetic: addition, and multiplication by one digit ----------------------------------------------
#
# Each step restates what is left of the operands ("63+15:"), so the digits to combine sit just before the
# "+" and the ":" nearby: a tiny model finds them by looking a few tokens back instead of counting positions
# inside the question. Numbers are written without spaces around + = ×: every digit is a token of its own,
# and a space before each number would be one more token in replies that must fit the reply budget.
#
# A slip is what the base model was measured to do (benchmarks/check_anatomy.py, docs/runs/slips.md): in
# column arithmetic it copies operands and carries right and gets one fact wrong. In addition the sum is one
# off, most often one short where a carry came in (the carry written but not added); in multiplication the
# carry is added wrong (one or ten off) more often than the product is (a neighbouring entry of the times
# table, or one off).
CARRY_NOT_ADDED = 0.6  # of addition slips in a column that a carry comes into
CARRY_ADD_SLIPS = 0.65  # of multiplication slips in a column that a carry comes into: the carry added wrong


def _column(rest_a: int, rest_b: int, op: str, carry: int, rng: random.Random | None = None,
            swap: bool = False) -> tuple[str, str, int]:
    """One column's head ("63+15"), its arithmetic ("3+5+1=9", or "4×6=24{sep}24+4=28": the product, then the
    carry in a step of its own, two easy facts instead of one hard one; {sep} is ", " or "，") and its value.
    With rng, one of its facts slips (see above)."""
    sym = "+" if op == "+" else "×"
    x, y = rest_a % 10, (rest_b % 10 if op == "+" else rest_b)
    a_txt, b_txt, x_txt, y_txt = str(rest_a), str(rest_b), str(x), str(y)
    if swap:
        a_txt, b_txt, x_txt, y_txt = b_txt, a_txt, y_txt, x_txt
    if op == "+":
        value = x + y + carry
        if rng is not None:
            value = value - 1 if carry and rng.random() < CARRY_NOT_ADDED else _off_by_one(value, rng)
        return f"{a_txt}+{b_txt}", f"{x_txt}+{y_txt}" + (f"+{carry}" if carry else "") + f"={value}", value
    product = x * y
    if rng is not None and not (carry and rng.random() < CARRY_ADD_SLIPS):
        step = rng.choice([1, y])  # one off, or the next entry of the times table
        product = product - step if product >= step and rng.random() < 0.5 else product + step
        rng = None
    value = product + carry
    if rng is not None:  # the carry added wrong
        step = rng.choice([1, 1, 10])
        value = value - step if value >= step and rng.random() < 0.5 else value + step
    expr = f"{x_txt}×{y_txt}={product}" + (f"{{sep}}{product}+{carry}={value}" if carry else "")
    return f"{a_txt}×{b_txt}", expr, value


def _off_by_one(value: int, rng: random.Random) -> int:
    return value + 1 if value == 0 or rng.random() < 0.5 else value - 1


def _n_columns(a: int, b: int, op: str) -> int:
    return len(str(a)) if op == "*" else max(len(str(a)), len(str(b)))


def column_steps(a: int, b: int, op: str, rng: random.Random, slip: bool):
    """Addition, or multiplication by one digit, column by column from the right with a running partial result
    ("63+15: 3+5+1=9, so far 92."); the last partial result is the answer. slip: one column's fact is wrong."""
    n_cols = _n_columns(a, b, op)
    slip_col = rng.randrange(n_cols) if slip else -1
    steps, carry, partial = [], 0, ""
    for i in range(n_cols):
        head, expr, value = _column(a // 10 ** i, b if op == "*" else b // 10 ** i, op, carry,
                                    rng if i == slip_col else None)
        last = i == n_cols - 1
        digit, carry = value % 10, value // 10
        partial = (str(value) if last else str(digit)) + partial
        more = f", carry {carry}" if carry and not last else ""
        zh_more = f"，进 {carry}" if carry and not last else ""
        en, zh = expr.format(sep=", "), expr.format(sep="，")
        steps.append((f"{head}: {en}, so far {partial}{more}.", f"{head}：{zh}，目前是 {partial}{zh_more}。"))
    return steps, str(int(partial))


def column_check(a: int, b: int, op: str, claimed: str, rng: random.Random, slip: bool, words: tuple[str, str]):
    """Check a claimed a op b by working it again with the operands swapped, column by column, each column's
    digit compared with the claim's digit there. The claim is restated beside the operands and shrinks with
    them ("15+63 vs 79:"), so the digit to compare is the last one before the ":", a few tokens back, as the
    digits to combine are; the comparison writes both digits side by side before its verdict ("9 and 9
    agree", "8 and 9 differ"), so that the verdict reads two tokens just written. Stops at the first column that
    differs; says "Right." when none does. The carry comes from the column's own sum, written just before.
    Returns ((en, zh) steps, whether the claim agreed). slip: one of the check's own facts is wrong."""
    claim, n_cols = int(claimed), _n_columns(a, b, op)
    slip_col = rng.randrange(n_cols) if slip else -1
    steps, carry = [words], 0
    for i in range(n_cols):
        head, expr, value = _column(a // 10 ** i, b if op == "*" else b // 10 ** i, op, carry,
                                    rng if i == slip_col else None, swap=True)
        last, rest_claim = i == n_cols - 1, claim // 10 ** i
        mine, theirs = (value, rest_claim) if last else (value % 10, rest_claim % 10)
        carry = value // 10
        en, zh = compare(mine, theirs)
        steps.append((f"{head} vs {rest_claim}: {expr.format(sep=', ')}, {en}.",
                       f"{head} 对 {rest_claim}：{expr.format(sep='，')}，{zh}。"))
        if mine != theirs:
            return steps, False
    steps.append(("Right.", "对了。"))
    return steps, True


def compare(mine: int, theirs: int) -> tuple[str, str]:
    """A check's comparison, the two values side by side, then the verdict: ("9 and 9 agree", "9 和 9 相同")."""
    if mine == theirs:
        return f"{mine} and {theirs} agree", f"{mine} 和 {theirs} 相同"
    return f"{mine} and {theirs} differ", f"{mine} 和 {theirs} 不同"


def digits(n: int) -> list[int]:
    return [int(c) for c in reversed(str(n))]


class Addition(Task):
    name = "add"

    def __init__(self, min_digits: int = 2, max_digits: int = 3):
        self.min_digits, self.max_digits = min_digits, max_digits

    @property
    def label(self):
        return f"add-{self.max_digits}d"

    def draw(self, rng):
        def number():
            n = rng.randint(self.min_digits, self.max_digits)
            return rng.randint(10 ** (n - 1), 10 ** n - 1)
        return {"a": number(), "b": number()}

    def key(self, d):  # a + b and b + a are one problem
        return "+".join(map(str, sorted((d["a"], d["b"]))))

    def question(self, d, lang, rng):
        a, b = d["a"], d["b"]
        if lang == "zh":
            return rng.choice([f"{a} 加 {b} 等于多少？", f"计算 {a} + {b}。", f"求 {a} 与 {b} 的和。"])
        return rng.choice([f"What is {a} + {b}?", f"Compute {a} + {b}.", f"Find the sum of {a} and {b}."])

    def solve(self, d):
        return str(d["a"] + d["b"])

    def direct(self, d, lang):
        return f"{d['a']} + {d['b']} = {self.solve(d)}" + ("。" if lang == "zh" else ".")

    INTRO = ("Add by columns:", "逐位相加：")
    AGAIN = ("Wait, add again.", "等等，重新加一遍。")

    def steps(self, d, rng, slip):
        return column_steps(d["a"], d["b"], "+", rng, slip)

    def check_steps(self, d, answer, rng, slip=False):
        """Add again with the numbers swapped, each column's digit compared with the sum's."""
        return column_check(d["a"], d["b"], "+", answer, rng, slip, ("Check by swapping:", "交换检查："))


class Multiplication(Task):
    name = "mul"

    def __init__(self, a_digits: tuple[int, int] = (2, 3), b_digits: tuple[int, int] = (1, 1)):
        self.a_digits, self.b_digits = tuple(a_digits), tuple(b_digits)

    @property
    def label(self):
        return f"mul-{self.a_digits[1]}x{self.b_digits[1]}"

    def draw(self, rng):
        na, nb = rng.randint(*self.a_digits), rng.randint(*self.b_digits)
        return {"a": rng.randint(10 ** (na - 1), 10 ** na - 1), "b": rng.randint(max(2, 10 ** (nb - 1)), 10 ** nb - 1)}

    def key(self, d):  # a × b and b × a are one problem
        return "*".join(map(str, sorted((d["a"], d["b"]))))

    def question(self, d, lang, rng):
        a, b = d["a"], d["b"]
        if lang == "zh":
            return rng.choice([f"{a} 乘 {b} 等于多少？", f"计算 {a} × {b}。", f"求 {a} 与 {b} 的积。"])
        return rng.choice([f"What is {a} × {b}?", f"Compute {a} × {b}.", f"Find the product of {a} and {b}."])

    def solve(self, d):
        return str(d["a"] * d["b"])

    def direct(self, d, lang):
        return f"{d['a']} × {d['b']} = {self.solve(d)}" + ("。" if lang == "zh" else ".")

    INTRO = ("Multiply by columns:", "逐位相乘：")
    AGAIN = ("Wait, multiply again.", "等等，重新乘一遍。")

    def steps(self, d, rng, slip):
        a, b = d["a"], d["b"]
        if b < 10:  # one multiplier digit: the column method, like addition
            return column_steps(a, b, "*", rng, slip)
        # several multiplier digits: one partial product per digit, then their sum
        parts = [a * dg * 10 ** i for i, dg in enumerate(digits(b)) if dg]
        terms = [f"{a} × {dg * 10 ** i}" for i, dg in enumerate(digits(b)) if dg]
        steps = [(f"Split {b}: {a} × {b} = {' + '.join(terms)}.", f"拆开 {b}：{a} × {b} = {' + '.join(terms)}。")]
        slip_at = rng.randrange(len(parts)) if slip else -1
        for i, (term, part) in enumerate(zip(terms, parts)):
            if i == slip_at:
                parts[i] = part = part + rng.choice([-1, 1]) * 10 ** rng.randint(0, len(str(part)) - 1)
            steps.append((f"{term} = {part}.", f"{term} = {part}。"))
        answer = str(sum(parts))
        total = " + ".join(map(str, parts))
        steps.append((f"{total} = {answer}. The product is {answer}.", f"{total} = {answer}。积是 {answer}。"))
        return steps, answer

    def intro(self, d):
        return self.INTRO if d["b"] < 10 else None

    def check_steps(self, d, answer, rng, slip=False):
        """Multiply again with the factors swapped (6×7 for 7×6: the times tables hold both), each column's
        digit compared with the product's; none for a multiplier of several digits."""
        if d["b"] >= 10:
            return None
        return column_check(d["a"], d["b"], "*", answer, rng, slip,
                            ("Check by swapping:", "交换检查："))


class LinearEquation(Task):
    """a x + b = c with an integer solution."""
    name = "linear"

    def __init__(self, max_coef: int = 9, max_x: int = 20, max_b: int = 0):
        self.max_coef, self.max_x, self.max_b = max_coef, max_x, max_b  # |b| <= max_b, or 10 max_coef if 0

    @property
    def label(self):
        return "linear-eq"

    def draw(self, rng):
        a = rng.randint(2, self.max_coef)
        x = rng.randint(-self.max_x, self.max_x)
        b = rng.randint(1, self.max_b or 10 * self.max_coef) * rng.choice([-1, 1])
        return {"a": a, "b": b, "x": x, "c": a * x + b}

    def key(self, d):
        return f"{d['a']}x+{d['b']}={d['c']}"

    @staticmethod
    def equation(d, compact: bool = False):
        sign = "+" if d["b"] > 0 else "-"
        if compact:
            return f"{d['a']}x{sign}{abs(d['b'])}={d['c']}"
        return f"{d['a']}x {sign} {abs(d['b'])} = {d['c']}"

    def question(self, d, lang, rng):
        eq = self.equation(d)
        if lang == "zh":
            return rng.choice([f"解方程 {eq}。", f"求 x：{eq}。"])
        return rng.choice([f"Solve {eq}.", f"Find x if {eq}."])

    def solve(self, d):
        return str(d["x"])

    def check(self, answer, problem):
        try:
            if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
                return False
            m = _LINEAR_ANSWER.fullmatch(answer.strip())
            return m is not None and int(m.group(1)) == int(problem.answer)
        except Exception:
            return False

    def normalize(self, answer, problem):  # "x = 7", "x=7" and "7" are one vote
        m = _LINEAR_ANSWER.fullmatch(answer.strip()) if len(answer) <= MAX_ANSWER_CHARS else None
        return answer.strip() if m is None else str(int(m.group(1)))

    def direct(self, d, lang):
        return f"x = {d['x']}" + ("。" if lang == "zh" else ".")

    AGAIN = ("Wait, solve again.", "等等，重新解。")

    def steps(self, d, rng, slip):
        a, b, c = d["a"], d["b"], d["c"]
        rhs = c - b
        if slip:
            rhs += rng.choice([-1, 1]) * a  # still divisible by a, so the slip does not show
        x = rhs // a
        ax = f"{c}-{b}" if b > 0 else f"{c}+{-b}"
        move, verb = ("Subtract", "减") if b > 0 else ("Add", "加")
        return [(f"{move} {abs(b)} on both sides: {a}x={ax}={rhs}.", f"两边{verb} {abs(b)}：{a}x={ax}={rhs}。"),
                (f"Divide by {a}: x={rhs}/{a}={x}.", f"两边除以 {a}：x={rhs}/{a}={x}。")], str(x)

    def check_steps(self, d, answer, rng, slip=False):
        """Put x back into the equation, with the facts the solution wrote read backwards (a×x for rhs/a, then
        + b for - b), and compare with its right side, restated beside them."""
        a, b, c, x = d["a"], d["b"], d["c"], int(answer)
        ax = a * x + (rng.choice([-1, 1]) * a if slip else 0)
        value = ax + b
        plus = f"{ax}+{b}" if b > 0 else f"{ax}-{-b}"
        en, zh = compare(value, c)
        steps = [(f"Check x={x} in {self.equation(d, compact=True)}: {a}×{x}={ax}, {plus}={value}, {en}.",
                  f"检查 x={x} 代入 {self.equation(d, compact=True)}：{a}×{x}={ax}，{plus}={value}，{zh}。")]
        return (steps + [("Right.", "对了。")], True) if value == c else (steps, False)


# -- countdown: reach the target with each given number used exactly once ------------------------------

_EXPR_CHARS = re.compile(r"[0-9+\-*/() ]+", re.ASCII)
_OPS = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y, ast.Mult: lambda x, y: x * y,
        ast.Div: lambda x, y: x / y}
MAX_NESTING = 12


def evaluate_expression(text: str) -> tuple[Fraction, list[int]] | None:
    """Value and integer literals of an arithmetic expression, or None if it is not one we accept.

    Only ASCII digits, + - * /, parentheses and spaces, at most MAX_ANSWER_CHARS characters and
    MAX_NESTING levels of parentheses; literals below 10^6; exact rational arithmetic; x/0 is None.
    """
    if not isinstance(text, str) or len(text) > MAX_ANSWER_CHARS or not _EXPR_CHARS.fullmatch(text):
        return None
    depth = 0
    for ch in text:  # bound the depth before ast sees it: deep nesting can exhaust the parser's stack
        depth += (ch == "(") - (ch == ")")
        if depth > MAX_NESTING or depth < 0:
            return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    literals: list[int] = []

    def value(node) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value < 10 ** 6:
            literals.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not allowed")

    try:
        return value(tree.body), literals
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


class Countdown(Task):
    """Reach the target with + - * / using each given number exactly once (the TinyZero/R1 favourite)."""
    name = "countdown"

    def __init__(self, n_numbers: int = 4, max_number: int = 25, max_target: int = 200):
        self.n_numbers, self.max_number, self.max_target = n_numbers, max_number, max_target

    @property
    def label(self):
        return f"countdown-{self.n_numbers}"

    def draw(self, rng):
        while True:
            nums = [rng.randint(1, self.max_number) for _ in range(self.n_numbers)]
            # build a random left-to-right chain over a shuffled order; keep integer, positive results
            order = nums[:]
            rng.shuffle(order)
            expr, val, ops = str(order[0]), order[0], []
            for n in order[1:]:
                choices = ["+", "*"] + (["-"] if val > n else []) + (["/"] if val % n == 0 and n > 1 else [])
                op = rng.choice(choices)
                new = {"+": val + n, "-": val - n, "*": val * n, "/": val // n}[op]
                ops.append((val, op, n, new))
                needs_brackets = op in "*/" and len(ops) > 1 and ops[-2][1] in "+-"
                expr = f"({expr}) {op} {n}" if needs_brackets else f"{expr} {op} {n}"
                val = new
            if 1 <= val <= self.max_target:
                return {"numbers": nums, "target": val, "expr": expr, "chain": ops}

    def key(self, d):
        return f"{sorted(d['numbers'])}->{d['target']}"

    def question(self, d, lang, rng):
        nums = ", ".join(map(str, d["numbers"]))
        if lang == "zh":
            return f"用数字 {nums} 各一次，通过 + - * / 得到 {d['target']}。"
        return f"Using the numbers {nums} once each, with + - * /, make {d['target']}."

    def solve(self, d):
        return d["expr"]

    def check(self, answer, problem):
        try:
            result = evaluate_expression(answer.strip())  # surrounding whitespace is fine, as for integers
            if result is None:
                return False
            val, literals = result
            return val == int(problem.data["target"]) and sorted(literals) == sorted(problem.data["numbers"])
        except Exception:
            return False

    def normalize(self, answer, problem):
        """Expressions that use exactly the given numbers and reach the same value are one vote (two correct
        expressions no longer split it); anything else as written."""
        result = evaluate_expression(answer.strip())
        if result is None or sorted(result[1]) != sorted(problem.data["numbers"]):
            return answer.strip()
        return f"= {result[0]}"

    def direct(self, d, lang):
        return f"{d['expr']} = {d['target']}" + ("。" if lang == "zh" else ".")

    def steps(self, d, rng, slip):
        if slip:  # a dead end: a wrong combination, believed
            a, b = rng.sample(d["numbers"], 2)
            return [(f"{a} × {b} = {a * b}. This makes {d['target']}.",
                     f"{a} × {b} = {a * b}。这就得到 {d['target']}。")], f"{a} * {b}"
        steps = [(f"{x} {op} {y} = {z}.", f"{x} {op} {y} = {z}。") for x, op, y, z in d["chain"]]
        steps.append((f"So {d['expr']} = {d['target']}.", f"所以 {d['expr']} = {d['target']}。"))
        return steps, d["expr"]

    AGAIN = ("Wait, try another way.", "等等，换一种方法。")

    def check_steps(self, d, answer, rng, slip=False):
        """Recompute the expression and compare with the target (and the numbers used)."""
        result = evaluate_expression(answer)
        value = result[0] if result else None
        shown = value if value is None or value.denominator != 1 else value.numerator
        if self.check(answer, Problem(self.name, "", "en", d["expr"], d)):
            return [(f"Check: {answer} = {shown}, each number once. Right.",
                     f"检查：{answer} = {shown}，每个数各用一次。对了。")], True
        return [(f"Check: {answer} = {shown}, not {d['target']} with each number once.",
                 f"检查：{answer} = {shown}，不是每个数各用一次得到 {d['target']}。")], False


TASKS: dict[str, Task] = {
    "add": Addition(),
    "mul": Multiplication(),
    "linear": LinearEquation(),
    "countdown": Countdown(),
}

# task mixtures per preset; difficulty knobs as constructor arguments
SUITES: dict[str, dict[str, dict]] = {
    "toy": {"add": dict(min_digits=1, max_digits=2)},
    "cpu": {"add": dict(min_digits=3, max_digits=3), "mul": dict(a_digits=(2, 3), b_digits=(1, 1)),
            "linear": dict(max_coef=9, max_x=9, max_b=9)},
    "gpu": {"add": dict(min_digits=3, max_digits=5), "mul": dict(a_digits=(2, 3), b_digits=(1, 2)),
            "linear": dict(), "countdown": dict(n_numbers=4)},
}


def get_task(name: str, **knobs) -> Task:
    """The task called `name`, with difficulty knobs overridden (e.g. get_task("add", max_digits=5))."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    if not knobs:
        return TASKS[name]
    task = type(TASKS[name]).__new__(type(TASKS[name]))
    task.__dict__.update({**TASKS[name].__dict__, **knobs})
    return task


def suite(name: str) -> dict[str, Task]:
    """The tasks of a suite: one of SUITES by name, or your own as module:name, a dict of tasks by name or
    one Task (docs/extending.md, a task). Yours join no table: their problems carry them (Problem.maker)."""
    if ":" in name:
        tasks = import_named(name, "suite")
        tasks = {tasks.name: tasks} if isinstance(tasks, Task) else tasks
        if not isinstance(tasks, dict) or not tasks or not all(isinstance(t, Task) for t in tasks.values()):
            got = type(tasks).__name__
            raise ConfigError("suite", f"{name}: must name a Task or a dict of Tasks by name, got {got}")
        for task in tasks.values():  # one name, one task: benchmarks, splits and logs go by the name
            if task.name in TASKS and type(TASKS[task.name]) is not type(task):
                raise ConfigError("suite", f"{name}: the task name {task.name!r} is taken by r1mini's own "
                                           f"{type(TASKS[task.name]).__name__}; give yours another `name`")
        return tasks
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose from {sorted(SUITES)}")
    return {task: get_task(task, **knobs) for task, knobs in SUITES[name].items()}


def draw_problems(rng: random.Random, tasks: dict[str, Task], n: int, zh_share: float,
                  split: str = "train") -> list[Problem]:
    """n problems: each from a task chosen at random, asked in Chinese with probability zh_share."""
    task_list = list(tasks.values())
    problems = []
    for _ in range(n):
        task = rng.choice(task_list)
        problems.append(task.sample(rng, split, "zh" if rng.random() < zh_share else "en"))
    return problems
