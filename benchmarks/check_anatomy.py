"""What a model's checks do, and where its first passes go wrong: sample it on dev-split problems and take the
replies apart.

The corpus (r1mini/tasks.py) teaches a check by another route at the solution's own granularity, after the
first pass: addition worked again with the numbers swapped and multiplication with the factors swapped,
column by column, each column's digit compared with the claimed result restated beside the operands
("71+85 vs 157: 1+5=6, 6 and 7 differ."), and a linear equation's x put back with the facts the solution wrote
("Check x=-9 in 2x+14=-4: 2×-9=-18, -18+14=-4, -4 and -4 agree. Right."). A check that agrees says "Right";
one that disagrees says "Wait" and solves again. Whether checking can pay depends on what the model does with
it. Per checkpoint and task, over the replies that check:

- first right: the first pass's answer (the last number before "Check") is right;
- first facts, check facts: every fact (x op y = z) the first pass, or the check, wrote is right;
- copied: every comparison sets side by side the check's own result and the claim's digit restated before it;
- verdicts: every comparison's verdict ("agree", "differ") is right about the two values it sets side by side;
- agrees: every comparison the check wrote is between equal values (as it wrote them);
- says right: the check ends in "Right" (对了), not in "not ..." and a second pass;
- right if agreeing: of the checks that agree, the share that say "Right";
- right, not agreeing: of all checks, the share that say "Right" although a comparison disagreed;
- final right: the reply's answer is right;
- final right after a wait: of the checks that do not say "Right" (and so solve again), the share whose final
  answer is right;
- cut off: the reply ran out of tokens before its answer.

And, over the step-by-step replies whose first pass is wrong, the first thing that went wrong: an operand
restated wrong (copy), a digit taken from it wrong (fetch), a carry dropped or wrong, a fact wrong (and which:
the sum one short with its carry written but not added, or one off; the product, or the carry added to it), the
running result assembled wrong, for linear equations the move (and whether its wrong result still divides by a,
as the corpus's slips do) or the division: what the corpus's slips model.

    python benchmarks/check_anatomy.py out/base,out/zero --problems 60 --k 4

Dev split, R1-Zero template, T 0.6 (--temperature 1 samples as R1-Zero's rollouts do), top-p 0.95. Prints
markdown tables and a few replies that check.
"""
import argparse
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from r1mini.checkpoint import load_checkpoint, seed_everything  # noqa: E402
from r1mini.evaluate import heldout_problems  # noqa: E402
from r1mini.report import markdown_table  # noqa: E402
from r1mini.rewards import accuracy_reward, arithmetic_facts, check_comparisons, reasoning_text  # noqa: E402
from r1mini.sampling import sample_completions  # noqa: E402
from r1mini.tasks import suite  # noqa: E402

_N = r"(-?\d+)"
_CHECK = re.compile(r"Check|检查")
_RIGHT = re.compile(r"Right|对了")
# a column of a pass: "63+15: 3+5+1=9, so far 92" / "34×6: 4×6=24, 24+4=28, so far 82"
_COLUMN = re.compile(r"(\d+) ?([+×]) ?(\d+) ?[:：] ?([^.。]*?)[,，] ?(?:so far|目前是) ?(\d+)")


def split_check(think: str) -> tuple[str, str, str] | None:
    """(first pass, check, what follows) of a reply that checks, or None."""
    m = _CHECK.search(think)
    if not m:
        return None
    rest = think[m.start():]
    wait = re.search(r"Wait|等等", rest)
    return think[:m.start()], rest[:wait.start()] if wait else rest, rest[wait.start():] if wait else ""


def anatomy(task: str, problem, reply: str) -> dict | None:
    """One reply's check taken apart, or None when it does not check in the corpus's shape."""
    think = reasoning_text(reply)
    parts = split_check(think)
    if parts is None:
        return None
    first, check, _ = parts
    numbers = re.findall(_N, first)
    compared = check_comparisons(check)
    if not numbers or compared is None:
        return None
    agrees = all(c["equal"] for c in compared)
    says_right = bool(_RIGHT.search(check)) and all(c["said same"] for c in compared)
    return {"first right": problem.data.get("x", None) == int(numbers[-1]) if task == "linear"
            else int(numbers[-1]) == int(problem.answer),
            "first facts": all(ok for _, ok in arithmetic_facts(first)),
            "check facts": all(ok for _, ok in arithmetic_facts(check)),
            "copied": all(c["copied"] for c in compared),
            "verdicts": all(c["said same"] == c["equal"] for c in compared),
            "agrees": agrees, "says right": says_right,
            "right if agreeing": says_right if agrees else None,
            "right, not agreeing": says_right and not agrees,
            "final right": accuracy_reward(reply, problem) > 0,
            "final right after a wait": accuracy_reward(reply, problem) > 0 if not says_right else None,
            "cut off": "</answer>" not in reply}


def first_slip(task: str, d: dict, first: str) -> str | None:
    """What went wrong first in a first pass whose answer is wrong; None when nothing could be located."""
    if task == "linear":
        return linear_slip(d, first)
    op = "+" if task == "add" else "×"
    carry, partial = 0, ""
    columns = _COLUMN.findall(first)
    if not columns:
        return "no column steps"
    n_cols = len(str(d["a"])) if op == "×" else max(len(str(d["a"])), len(str(d["b"])))
    for i, (ra, sym, rb, expr, so_far) in enumerate(columns):
        if i >= n_cols:
            return "a column too many"
        want = (d["a"] // 10 ** i, d["b"] if op == "×" else d["b"] // 10 ** i)
        if (int(ra), int(rb)) != want:
            return "copy"
        nums = [int(x) for x in re.findall(r"\d+", expr)]
        x, y = want[0] % 10, (want[1] % 10 if op == "+" else want[1])
        if nums[:2] != [x, y]:
            return "fetch"
        fact = x + y if op == "+" else x * y
        if op == "+":
            written_carry = nums[2] if len(nums) == 4 else 0
            value_ok = nums[-1] == fact + written_carry
        else:
            written_carry = nums[4] if len(nums) >= 6 else 0
            value_ok = nums[2] == fact and (len(nums) < 6 or (nums[3] == fact and nums[5] == fact + written_carry))
        if written_carry != carry:
            return "carry dropped" if written_carry == 0 else "carry wrong"
        if not value_ok:
            return fact_slip(op, nums, fact, written_carry)
        value = fact + carry
        partial = (str(value) if i == n_cols - 1 else str(value % 10)) + partial
        if so_far != partial:
            return "running result"
        carry = value // 10
    return "too few columns" if len(columns) < n_cols else None


def fact_slip(op: str, nums: list[int], fact: int, carry: int) -> str:
    """Which fact of a column is wrong, and how: the sum one short where the carry was written but not added, or
    one off otherwise; the product wrong, or the carry added to a right product wrong."""
    if op == "+":
        said = nums[-1]
        if carry and said == fact:
            return "fact: carry written, not added"
        return "fact: sum one off" if abs(said - fact - carry) == 1 else "fact: sum off more"
    if nums[2] != fact:
        return "fact: product"
    return "fact: carry added wrong"


def linear_slip(d: dict, first: str) -> str | None:
    """The move (c - b in one signed sum) or the division; a move whose wrong result is off by a multiple of a
    still divides by a, as the corpus's own linear slips are written, so the division after it looks right."""
    facts = arithmetic_facts(first)
    if not facts:
        return "no steps"
    for text, ok in facts:
        if not ok:
            if "/" in text:
                return "division"
            said = re.search(rf"=\s*{_N}\s*$", text)
            divides = said is not None and (int(said.group(1)) - (d["c"] - d["b"])) % d["a"] == 0
            return "move, still divisible by a" if divides else "move"
    return "copy"  # every fact right, but of the wrong numbers


def sample(path: str, name: str, task, args):
    model, tokenizer, _ = load_checkpoint(path, "cpu")
    problems = heldout_problems({name: task}, args.problems, seed=args.seed, lang="en", split="dev")
    with torch.no_grad():
        return sample_completions(model, tokenizer, problems, args.k, temperature=args.temperature, top_p=0.95,
                                  max_new_tokens=args.max_new_tokens, seed=args.seed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", help="checkpoint directories, comma-separated")
    p.add_argument("--problems", type=int, default=60,
                   help="dev problems per task (linear-eq has 122 dev problems, 61 a language)")
    p.add_argument("--k", type=int, default=4, help="samples per problem")
    p.add_argument("--max_new_tokens", type=int, default=224)
    p.add_argument("--show", type=int, default=2, help="replies that check to print per checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.6, help="1.0: as R1-Zero's rollouts sample")
    args = p.parse_args(argv)
    cols = ["first right", "first facts", "check facts", "copied", "verdicts", "agrees", "says right",
            "right if agreeing", "right, not agreeing", "final right", "final right after a wait", "cut off"]
    rows, slip_rows = [], []
    for path in args.checkpoints.split(","):
        seed_everything(args.seed)
        _, _, meta = load_checkpoint(path, "cpu")
        tasks = suite(meta.get("base_config", meta.get("config", {})).get("suite") or "cpu")
        shown = 0
        for name, task in tasks.items():
            if name not in ("add", "mul", "linear"):
                continue
            parts, slips, n_replies, n_steps = [], Counter(), 0, 0
            for s in sample(path, name, task, args):
                for reply in s.completions:
                    n_replies += 1
                    a = anatomy(name, s.problem, reply)
                    if a:
                        parts.append(a)
                        if shown < args.show:
                            print(f"{path} {task.label}: {s.problem.question} -> {reply.strip()}\n")
                            shown += 1
                    first = (split_check(reasoning_text(reply)) or (reasoning_text(reply),))[0]
                    if re.search(r"=.*=", first):  # step by step
                        n_steps += 1
                        numbers = re.findall(_N, first)
                        right = numbers and int(numbers[-1]) == int(s.problem.answer)
                        if not right:
                            slips[first_slip(name, s.problem.data, first) or "none located"] += 1
            rows.append([path, task.label, f"{len(parts)} of {n_replies}"] + [share(parts, c) for c in cols])
            wrong = sum(slips.values())
            slip_rows.append([path, task.label, f"{wrong} of {n_steps}",
                              ", ".join(f"{k} {v / max(1, wrong):.2f}" for k, v in slips.most_common())])
    print(markdown_table(["checkpoint", "benchmark", "replies that check"] + cols, rows))
    print()
    print(markdown_table(["checkpoint", "benchmark", "step-by-step first passes wrong", "first slip"], slip_rows))


def share(parts: list[dict], col: str) -> str:
    values = [a[col] for a in parts if a[col] is not None]
    return f"{sum(values) / len(values):.2f}" if values else ""


if __name__ == "__main__":
    main()
