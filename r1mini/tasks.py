"""Synthetic reasoning tasks with exact verifiers: addition, multiplication, linear equations, countdown.

Each task draws problems from a seeded `random.Random`, writes worked solutions in several styles, and
checks an answer string. The styles are what the small-scale experiment needs (docs/results.md):

- "direct": the answer at once. A small model is bad at this, which leaves RL something better to find.
- "steps": one small step per line of thought (digit by digit, with a running partial result).
- "reflect": steps, then a check by an independent route (subtract back, substitute x, recompute the
  expression), as people check: the first pass is usually right and the check confirms it; when it slipped
  (CHECK_FINDS_SLIP of these solutions), the check disagrees and a correction follows. Tasks without a cheap
  check (`verify` returns None) write plain steps instead.
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
        steps, answer = self.checked(problem.data, rng) if style == "reflect" else \
            self.steps(problem.data, rng, slip=style == "wrong")
        if lang == "mixed":  # start in one language, finish in the other
            first = rng.choice(["en", "zh"])
            cut = rng.randint(1, max(1, len(steps) - 1))
            langs = [first] * cut + [("zh" if first == "en" else "en")] * (len(steps) - cut)
        else:
            langs = [lang] * len(steps)
        return " ".join(_say(lg, en, zh) for (en, zh), lg in zip(steps, langs)), answer

    def checked(self, data: dict, rng: random.Random) -> tuple[list, str]:
        """Steps, then the check (verify): a first pass that slipped (CHECK_FINDS_SLIP of the time) is caught and
        corrected, a right one confirmed. Plain steps for a task without a check."""
        if type(self).verify is Task.verify:  # no check at all: one clean pass
            return self.steps(data, rng, slip=False)
        slipped = rng.random() < CHECK_FINDS_SLIP
        steps, answer = self.steps(data, rng, slip=slipped)
        check = self.verify(data, answer, rng)
        if check is None:
            return self.steps(data, rng, slip=False)
        more, answer = check
        return steps + more, answer

    def verify(self, data: dict, answer: str, rng: random.Random) -> tuple[list, str] | None:
        """A check of `answer` by an independent route: (en, zh) steps, and the answer they leave (the same one
        when the check confirms it; the right one, after "wait" and a correction, when it does not). None: the
        task has no check cheap enough (its "reflect" solutions are plain steps)."""
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


def column_steps(a: int, b: int, op: str, rng: random.Random, slip: bool):
    """Digit-by-digit addition or one-digit multiplication from the right, with a running partial result.

    Each step restates what is left of the operands ("76 + 79:"), so the digits to combine always sit
    just before the "+" and the ":" nearby: a tiny model finds them by looking a few tokens back instead
    of counting positions inside the question. A slip makes one column's value off by one.
    """
    n_cols = len(str(a)) if op == "*" else max(len(str(a)), len(str(b)))
    steps, carry, partial = [], 0, ""
    slip_col = rng.randrange(n_cols) if slip else -1
    for i in range(n_cols):
        rest_a, rest_b = a // 10 ** i, (b if op == "*" else b // 10 ** i)
        x, y = rest_a % 10, rest_b % 10
        head = f"{rest_a} + {rest_b}" if op == "+" else f"{rest_a} × {rest_b}"
        if op == "+":
            expr = f"{x} + {y}" + (f" + {carry}" if carry else "")
        else:  # the product, then the carry in a step of its own: two easy facts instead of one hard one
            expr = f"{x} × {y}" + (f" = {x * y}, {x * y} + {carry}" if carry else "")
        value = (x + y if op == "+" else x * y) + carry
        last = i == n_cols - 1
        if i == slip_col:
            value = value + 1 if value == 0 or rng.random() < 0.5 else value - 1
        digit, carry = value % 10, value // 10
        partial = (str(value) if last else str(digit)) + partial
        en = f"{head}: {expr} = {value}, so far {partial}" + (f", carry {carry}." if carry and not last else ".")
        zh = f"{head}：{expr} = {value}，目前是 {partial}" + (f"，进 {carry}。" if carry and not last else "。")
        steps.append((en, zh))
    return steps, str(int(partial))


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

    def steps(self, d, rng, slip):
        intro = ("Add digit by digit from the right.", "从右往左逐位相加。")
        steps, answer = column_steps(d["a"], d["b"], "+", rng, slip)
        return [intro] + steps + [(f"The sum is {answer}.", f"和是 {answer}。")], answer

    def verify(self, d, answer, rng):
        """Subtract back: sum - b must give a. When it does not, the difference says how far off the sum is."""
        a, b, s = d["a"], d["b"], int(answer)
        back = s - b
        if back == a:
            return [(f"Check: {s} - {b} = {back}. Right.", f"检查：{s} - {b} = {back}。对了。")], answer
        off, fixed = abs(back - a), a + b
        op, more, zh_more = ("-", "too much", "多了") if back > a else ("+", "too little", "少了")
        steps = [(f"Check: {s} - {b} = {back}, not {a}. Wait, the sum is {off} {more}: {s} {op} {off} = {fixed}.",
                  f"检查：{s} - {b} = {back}，不是 {a}。等等，和{zh_more} {off}：{s} {op} {off} = {fixed}。")]
        return steps, str(fixed)


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

    def steps(self, d, rng, slip):
        a, b = d["a"], d["b"]
        if b < 10:  # one multiplier digit: the column method, like addition
            intro = ("Multiply digit by digit from the right.", "从右往左逐位相乘。")
            steps, answer = column_steps(a, b, "*", rng, slip)
            return [intro] + steps + [(f"The product is {answer}.", f"积是 {answer}。")], answer
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
    def equation(d):
        sign = "+" if d["b"] > 0 else "-"
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
        return f"{self.equation(d)}, x = {d['x']}" + ("。" if lang == "zh" else ".")

    def steps(self, d, rng, slip):
        a, b, c, x = d["a"], d["b"], d["c"], d["x"]
        rhs = c - b
        if slip:
            rhs += rng.choice([-1, 1]) * a  # still divisible by a, so the slip does not show
        x = rhs // a
        ax = f"{c} - {b}" if b > 0 else f"{c} + {-b}"
        move, verb = ("Subtract", "减") if b > 0 else ("Add", "加")
        return [(f"{move} {abs(b)} on both sides: {a}x = {ax} = {rhs}.", f"两边{verb} {abs(b)}：{a}x = {ax} = {rhs}。"),
                (f"Divide by {a}: x = {rhs} / {a} = {x}.", f"两边除以 {a}：x = {rhs} / {a} = {x}。")], str(x)

    def verify(self, d, answer, rng):
        """Substitute x back: a x + b must give c. When it does not, solve again."""
        a, b, c, x = d["a"], d["b"], d["c"], int(answer)
        value = a * x + b
        plus = f"{a * x} + {b}" if b > 0 else f"{a * x} - {-b}"
        check = (f"Check: {a} × {x} = {a * x}, {plus} = {value}", f"检查：{a} × {x} = {a * x}，{plus} = {value}")
        if value == c:
            return [(check[0] + ". Right.", check[1] + "。对了。")], answer
        steps = [(check[0] + f", not {c}. Wait, solve again.", check[1] + f"，不是 {c}。等等，重新解。")]
        again, right = self.steps(d, rng, slip=False)
        return steps + again, right


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

    def verify(self, d, answer, rng):
        """Recompute the expression and compare with the target (and the numbers used); another way when it fails."""
        result = evaluate_expression(answer)
        value = result[0] if result else None
        shown = value if value is None or value.denominator != 1 else value.numerator
        if self.check(answer, Problem(self.name, "", "en", d["expr"], d)):
            return [(f"Check: {answer} = {shown}, each number once. Right.",
                     f"检查：{answer} = {shown}，每个数各用一次。对了。")], answer
        steps = [(f"Check: {answer} = {shown}, not {d['target']} with each number once. Wait, try another way.",
                  f"检查：{answer} = {shown}，不是每个数各用一次得到 {d['target']}。等等，换一种方法。")]
        again, right = self.steps(d, rng, slip=False)
        return steps + again, right


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
            "linear": dict(max_coef=5, max_x=9, max_b=20)},
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
