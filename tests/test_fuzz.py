"""Model output is hostile input. A seeded fuzz loop throws strings built from a nasty alphabet (tags, digits,
operators, deep parentheses, huge exponents, long numbers, CJK, NUL bytes, lone surrogates, 100k-character
inputs, \\boxed and \\fbox with unbalanced and deeply nested braces) at every function that reads completions,
in both answer formats (tags, boxed), and checks that each one returns quickly, never raises, and stays in range.
The format reward and the boxed answer are checked against independent oracles, so neither can be gamed with
repeated, nested or reordered tags or braces. Run with -s for the counts."""
import itertools
import random
import re
import time
from pathlib import Path

import pytest

from r1mini import filters, rewards
from r1mini.formats import answer_format
from r1mini.task_files import task_for
from r1mini.tasks import TASKS, SUITES, Problem, evaluate_expression, get_task, parse_int

ROOT = Path(__file__).resolve().parents[1]
SLOWEST_ALLOWED_S = 1.0  # a safety bound, far above what any call takes; the measured figure is printed
PIECES = ["<think>", "</think>", "<answer>", "</answer>", "<think", "answer>", "</", " ", " ", "\n", "\n\n", "\t",
          "0", "1", "7", "9", "42", "-3", "+", "-", "*", "/", "**", "=", "＝", "(", ")", "((((", "))))", "9**9**9",
          "10**100000", "1e309", "nan", "inf", "x", "x = 5", "99999999999999999999", "9" * 300, "wait", "Wait,",
          "check", "verify", "等等", "检查", "验证", "的", "是", "所以", "。", "，", "\x00", "\udcff", "🙂", "\u200b",
          "```", "def f(", "import os", "__import__('os').system('x')", "print(", ".", "!", "?", "the", "so far",
          "\\", '"', "{", "}", "\\boxed{", "\\boxed", "\\boxed ", "\\fbox{", "\\text{", "{{{{", "}}}}", "$"]


def problems():
    rng = random.Random(0)
    tasks = {name: get_task(name, **knobs) for suite in SUITES.values() for name, knobs in suite.items()}
    boxed = [Problem("jsonl", "q", "en", "12", {"checker": checker, "answer": "12", "answer_format": "boxed"})
             for checker in ("number", "exact")]  # a JSONL file's problems whose answers come boxed
    return [task.sample(rng, split, lang) for task in tasks.values() for split in ("train", "test")
            for lang in ("en", "zh")] + boxed


PROBLEMS = problems()


def nasty_strings(n: int, seed: int = 0):
    rng = random.Random(seed)
    for i in range(n):
        size = int(2 ** rng.uniform(0, 9))  # 1 to 512 pieces, most of them short
        text = "".join(rng.choice(PIECES) for _ in range(size))
        if i % 3 == 0:  # the template's shape around nasty content, so the deeper parsers run too
            text = f"<think>{text}</think> {text[:40]} <answer>{text[-20:]}</answer>"
        yield text
    # long and adversarial ones
    yield "9" * 100_000
    yield "(" * 50_000 + "1" + ")" * 50_000
    yield "1" + "*9" * 50_000
    yield "9**" * 30_000 + "9"
    for k in (300, 790):  # under the 20k bound: made parse_reasoning_reply backtrack for seconds (cubic)
        yield "<think>" + "</think><answer></answer>" * k + "x"
    yield "<think>" + "a" * 19_900 + "</think><answer>5</answer>"
    yield "<think>" * 14_000 + "</answer>" * 1_000
    yield ("wait, check 等等 " * 10_000)[:100_000]
    yield ("so far 1 + 1 = 2. " * 6_000)[:100_000]
    yield "\x00" * 100_000
    yield "的" * 100_000
    yield "\\boxed{" * 19_000 + "5"  # deep and never closed
    yield "<think> a </think> \\boxed{" + "{" * 9_000 + "5" + "}" * 9_001
    yield "\\boxed{5}" * 2_000 + "\\boxed " + "9" * 5_000
    yield "\\fbox" * 4_000 + "{" + "}" * 10_000
    yield " ".join(str(rng.randrange(10 ** 6)) for _ in range(15_000))


def calls(text: str, problem):
    """(name, function, check of its result) for every reader of model output."""
    unit = lambda v: 0.0 <= v <= 1.0
    boolean = lambda v: isinstance(v, bool)
    yield "check", lambda: task_for(problem).check(text, problem), boolean
    yield "normalize", lambda: task_for(problem).normalize(text, problem), lambda v: isinstance(v, str)
    yield "evaluate_expression", lambda: evaluate_expression(text), lambda v: v is None or len(v) == 2
    yield "parse_int", lambda: parse_int(text), lambda v: v is None or isinstance(v, int)
    yield "parse_completion", lambda: rewards.parse_completion(text), lambda v: v is None or len(v) == 2
    yield "parse_reasoning_reply", lambda: rewards.parse_reasoning_reply(text), lambda v: v is None or len(v) == 3
    yield "extract_answer", lambda: rewards.extract_answer(text), lambda v: v is None or (isinstance(v, str) and v)
    yield "format_reward", lambda: rewards.format_reward(text), lambda v: v in (0.0, 1.0)
    yield "reply_format_reward", lambda: rewards.reply_format_reward(text), lambda v: v in (0.0, 1.0)
    yield "accuracy_reward", lambda: rewards.accuracy_reward(text, problem), lambda v: v in (0.0, 1.0)
    yield "zero_rewards", lambda: rewards.zero_rewards([text], [problem]), \
        lambda v: v[0] == [v[1]["accuracy"][0] + v[1]["format"][0]] and all(x[0] in (0.0, 1.0) for x in v[1].values())
    yield "reasoning_rewards", lambda: rewards.reasoning_rewards([text], [problem]), lambda v: 0.0 <= v[0][0] <= 3.0
    yield "last_boxed", lambda: rewards.last_boxed(text), lambda v: v is None or (isinstance(v, str) and v)
    yield "parse_completion/boxed", lambda: rewards.parse_completion(text, "boxed"), lambda v: v is None or len(v) == 2
    yield "parse_reasoning_reply/boxed", lambda: rewards.parse_reasoning_reply(text, "boxed"), \
        lambda v: v is None or len(v) == 3
    yield "format_reward/boxed", lambda: rewards.format_reward(text, "boxed"), lambda v: v in (0.0, 1.0)
    yield "reply_format_reward/boxed", lambda: rewards.reply_format_reward(text, "boxed"), lambda v: v in (0.0, 1.0)
    yield "plain_reply_reward", lambda: rewards.plain_reply_reward(text), lambda v: v in (0.0, 1.0)
    yield "judged_text", lambda: rewards.judged_text(text, "helpful"), \
        lambda v: isinstance(v, str) and len(v) <= len(text)
    yield "reasoning_text", lambda: rewards.reasoning_text(text), lambda v: isinstance(v, str) and len(v) <= len(text)
    yield "is_step_by_step", lambda: rewards.is_step_by_step(text), boolean
    yield "count_reflection_words", lambda: rewards.count_reflection_words(text), lambda v: v >= 0
    yield "arithmetic_facts", lambda: rewards.arithmetic_facts(text), \
        lambda v: isinstance(v, list) and all(isinstance(f, str) and isinstance(ok, bool) for f, ok in v)
    yield "language_consistency/en", lambda: rewards.language_consistency(text, "en"), unit
    yield "language_consistency/zh", lambda: rewards.language_consistency(text, "zh"), unit
    yield "mixed_language", lambda: filters.mixed_language(text), boolean
    yield "overlong_paragraph", lambda: filters.overlong_paragraph(text), boolean
    yield "has_code_block", lambda: filters.has_code_block(text), boolean
    yield "repeats", lambda: filters.repeats(text), boolean
    row = {"prompt": "q", "completion": text, "correct": True}
    yield "rejection_filter", lambda: filters.rejection_filter([row]), \
        lambda v: v[1]["total"] == 1 and len(v[0]) == v[1]["kept"] <= 1


def test_fuzz_every_reader_of_model_output():
    slowest, n_inputs, n_calls = (0.0, ""), 0, 0
    for i, text in enumerate(nasty_strings(3_000)):
        problem = PROBLEMS[i % len(PROBLEMS)]
        n_inputs += 1
        for name, fn, ok in calls(text, problem):
            t0 = time.perf_counter()
            try:
                value = fn()
            except Exception as e:  # noqa: BLE001 - any exception is the failure we look for
                pytest.fail(f"{name} raised {type(e).__name__}: {e} on input {text[:200]!r}")
            dt = time.perf_counter() - t0
            n_calls += 1
            slowest = max(slowest, (dt, f"{name} on {len(text):,} chars"))
            assert ok(value), f"{name} returned {value!r} on {text[:200]!r}"
        # one parser serves everyone: a completion in the right format has the answer extract_answer finds
        for where in ("tags", "boxed"):
            parsed = rewards.parse_completion(text, where)
            if parsed is not None:
                assert rewards.extract_answer(text, where) == parsed[1]
        if rewards.accuracy_reward(text, problem):
            assert task_for(problem).check(rewards.extract_answer(text, answer_format(problem)), problem)
    print(f"\nfuzz: {n_inputs} inputs, {n_calls} calls, slowest {slowest[0] * 1000:.1f} ms ({slowest[1]})")
    assert slowest[0] < SLOWEST_ALLOWED_S


# -- the format reward cannot be gamed -------------------------------------------------------------------

_TAGS = re.compile(r"</?(?:think|answer)>")


def format_oracle(text: str) -> float:
    """The R1-Zero format written independently of rewards.py: the tags, in order, are exactly
    think /think answer /answer, with only whitespace outside them, a non-empty reasoning and a non-empty
    answer."""
    if len(text) > rewards.MAX_COMPLETION_CHARS or _TAGS.findall(text) != list(rewards.TAGS):
        return 0.0
    before, rest = text.split("<think>", 1)
    think, rest = rest.split("</think>", 1)
    between, rest = rest.split("<answer>", 1)
    answer, after = rest.split("</answer>", 1)
    return float(not before.strip() and not between.strip() and not after.strip() and bool(think.strip())
                 and bool(answer.strip()))


def test_format_reward_agrees_with_an_independent_oracle_on_random_tag_sequences():
    rng = random.Random(1)
    fillers = ["", " ", "\n", "2 + 3 = 5", "5", "x", "<think", "answer>", "等等"]
    n_good = 0
    for _ in range(20_000):
        tags = [rng.choice(rewards.TAGS) for _ in range(rng.randint(0, 8))]
        if rng.random() < 0.3:
            tags = list(rewards.TAGS)
        text = rng.choice(fillers) + "".join(t + rng.choice(fillers) for t in tags)
        expected = format_oracle(text)
        n_good += expected == 1.0
        assert rewards.format_reward(text) == expected, text
    assert n_good > 100  # the loop did reach the well-formed case


@pytest.mark.parametrize("text", [
    "<think> a </think> <answer> 5 </answer> <answer> 6 </answer>",  # two answers
    "<think> a </think> <think> b </think> <answer> 5 </answer>",  # two thinks
    "<think> <think> a </think> </think> <answer> 5 </answer>",  # nested think
    "<think> a </think> <answer> <answer> 5 </answer> </answer>",  # nested answer
    "<answer> 5 </answer> <think> a </think>",  # reordered
    "<think> a <answer> 5 </answer> </think>",  # answer inside think
    "<think> a </think> <answer> </answer>",  # empty answer
    "<think> a </think> <answer> 5 </answer> and more",  # text after
    "so <think> a </think> <answer> 5 </answer>",  # text before
    "<think> a </think> b <answer> 5 </answer>",  # text between (the chat reply's summary is not this format)
    "<think> a </think> <answer> 5 </answer>" * 2,  # the whole thing twice
    "<think> a </think> <answer> 5",  # cut off
])
def test_repeated_nested_or_reordered_tags_score_zero(text):
    assert rewards.format_reward(text) == 0.0
    assert rewards.format_reward("<think> a </think> <answer> 5 </answer>") == 1.0


def test_every_order_of_the_four_tags_but_one_scores_zero():
    for order in itertools.permutations(rewards.TAGS):
        text = f"{order[0]} a {order[1]} {order[2]} 5 {order[3]}"
        assert rewards.format_reward(text) == float(order == rewards.TAGS)
    for order in itertools.permutations(rewards.TAGS):  # the R1 chat reply: think, summary, answer
        text = f"{order[0]} a {order[1]} summary {order[2]} 5 {order[3]}"
        assert rewards.reply_format_reward(text) == float(order == rewards.TAGS)


def boxed_oracle(text: str) -> str | None:
    """The last box written independently of rewards.last_boxed: every command found from the left, the last
    one's argument read with a stack of open braces."""
    starts = [(i, c) for i in range(len(text)) for c in ("\\boxed", "\\fbox") if text.startswith(c, i)]
    if not starts:
        return None
    i, c = starts[-1]
    rest = text[i + len(c):]
    arg = rest.lstrip(" \t")
    if arg.startswith("{"):
        stack = []
        for k, ch in enumerate(arg):
            if ch == "{":
                stack.append(k)
            elif ch == "}":
                stack.pop()
                if not stack:
                    return arg[1:k].strip() or None
        return None
    if arg == rest and arg[:1].isalpha():
        return None
    return re.match(r"[^\s$]*", arg).group() or None


def test_last_boxed_agrees_with_an_independent_oracle_on_random_brace_sequences():
    rng = random.Random(2)
    pieces = ["\\boxed", "\\fbox", "{", "}", "{", "}", " ", "5", "x", "$", "\\frac", "\\box", "ed"]
    n_found = 0
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        expected = boxed_oracle(text)
        n_found += expected is not None
        assert rewards.last_boxed(text) == expected, text
    assert n_found > 1_000  # the loop did reach boxes that close


# -- nothing evaluates model text ------------------------------------------------------------------------

FORBIDDEN = re.compile(r"(?<![.\w])(?:eval|exec|compile|__import__)\s*\(|sympify|pickle\.loads?\(|"
                       r"torch\.load\((?![^)]*weights_only=True)")


def test_forbidden_pattern_catches_what_it_should():
    for bad in ["x = eval(s)", "exec (code)", "sympy.sympify(answer)", "compile(t, 'f', 'eval')",
                "torch." "load(path)", "pickle.load(f)", "__import__('os')"]:  # split: not itself a hit of a grep
        assert FORBIDDEN.search(bad), bad
    for fine in ["model.eval()", "re.compile(r'x')", "torch.load(f, map_location='cpu', weights_only=True)",
                 "import eval as eval_script", "evaluate(model)"]:
        assert not FORBIDDEN.search(fine), fine


def test_no_eval_exec_or_unsafe_load_in_the_code():
    files = sorted((ROOT / "r1mini").glob("*.py")) + sorted(ROOT.glob("*.py"))
    assert len(files) >= 10
    hits = [f"{f.relative_to(ROOT)}:{n}: {line.strip()}" for f in files
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if FORBIDDEN.search(line)]
    assert not hits, "model text must never be executed:\n" + "\n".join(hits)
