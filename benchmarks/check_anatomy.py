"""What a model's checks do: sample it on dev-split problems and take every reply that checks apart.

The corpus teaches a check by another route after the first pass (subtract back for addition, put x back for
linear equations): "Check: 1089 - 212 = 877. Right." when it agrees, "... not 876. Wait, ..." and a correction
when it does not. Whether checking can pay depends on what the model does with it: is the check's arithmetic
right, does its value agree with the question, and does the model say "Right" only when it agrees? This script
counts, per checkpoint and task, over the replies that check:

- first right: the first pass (the answer before the check) is right;
- check sums right: the check's own arithmetic is right (S - b for addition; a x and a x + b for linear);
- agrees: the check's value is what the question says (a for addition, c for linear);
- says right: the reply goes on with "Right" (对了), else it says "Wait" (等等) and corrects;
- right, not agreeing: it says "Right" after a check whose value disagreed (the check not read);
- final right: the reply's answer is right.

    python benchmarks/check_anatomy.py out/base,out/zero --problems 100 --k 4

Dev split, R1-Zero template, T 0.6 (--temperature 1 samples as R1-Zero's rollouts do), top-p 0.95. Prints a
markdown table and a few replies that check.
"""
import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from r1mini.checkpoint import load_checkpoint, seed_everything  # noqa: E402
from r1mini.evaluate import heldout_problems  # noqa: E402
from r1mini.report import markdown_table  # noqa: E402
from r1mini.sampling import sample_completions  # noqa: E402
from r1mini.rewards import accuracy_reward, reasoning_text  # noqa: E402
from r1mini.tasks import suite  # noqa: E402

_NUM = r"(-?\d+)"
_CHECK = re.compile(r"Check:|检查：")
# the check's arithmetic, as the corpus writes it
_ADD_CHECK = re.compile(rf"{_NUM} - {_NUM} = {_NUM}")
_LINEAR_CHECK = re.compile(rf"{_NUM} × {_NUM} = {_NUM}[,，] ?{_NUM} ([+-]) (\d+) = {_NUM}")


def anatomy(task: str, problem, reply: str) -> dict | None:
    """One reply's check taken apart, or None when it does not check (or the check is not in the corpus's
    shape)."""
    think = reasoning_text(reply)
    m = _CHECK.search(think)
    if not m:
        return None
    before, check = think[:m.start()], think[m.start():]
    numbers = re.findall(_NUM, before)
    if not numbers:
        return None
    first = int(numbers[-1])
    d = problem.data
    if task == "add":
        c = _ADD_CHECK.search(check)
        if not c:
            return None
        s, b, value = map(int, c.groups())
        sums_right, agrees = value == s - b, value == d["a"]
        first_right = first == d["a"] + d["b"]
    elif task == "linear":
        c = _LINEAR_CHECK.search(check)
        if not c:
            return None
        a, x, ax, ax2, sign, b, value = c.groups()
        a, x, ax, ax2, b, value = map(int, (a, x, ax, ax2, b, value))
        sums_right = ax == a * x and value == ax2 + (b if sign == "+" else -b)
        agrees, first_right = value == d["c"], first == d["x"]
    else:
        return None
    says_right = bool(re.search(r"Right|对了", check)) and not re.search(r"Wait|等等", check)
    return {"first right": first_right, "check sums right": sums_right, "agrees": agrees, "says right": says_right,
            "right, not agreeing": says_right and not agrees, "final right": accuracy_reward(reply, problem) > 0}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", help="checkpoint directories, comma-separated")
    p.add_argument("--problems", type=int, default=100, help="dev problems per task")
    p.add_argument("--k", type=int, default=4, help="samples per problem")
    p.add_argument("--max_new_tokens", type=int, default=176)
    p.add_argument("--show", type=int, default=2, help="replies that check to print per checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.6, help="1.0: as R1-Zero's rollouts sample")
    args = p.parse_args(argv)
    cols = ["first right", "check sums right", "agrees", "says right", "right, not agreeing", "final right"]
    rows = []
    for path in args.checkpoints.split(","):
        seed_everything(args.seed)
        model, tokenizer, meta = load_checkpoint(path, "cpu")
        tasks = {name: t for name, t in suite(meta.get("base_config", meta.get("config", {})).get("suite") or "cpu")
                 .items() if name in ("add", "linear")}
        shown = 0
        for name, task in tasks.items():
            problems = heldout_problems({name: task}, args.problems, seed=args.seed, lang="en", split="dev")
            with torch.no_grad():
                samples = sample_completions(model, tokenizer, problems, args.k, temperature=args.temperature,
                                             top_p=0.95, max_new_tokens=args.max_new_tokens, seed=args.seed)
            parts, n_replies = [], 0
            for s in samples:
                for reply in s.completions:
                    n_replies += 1
                    a = anatomy(name, s.problem, reply)
                    if a:
                        parts.append(a)
                        if shown < args.show:
                            print(f"{path} {task.label}: {s.problem.question} -> {reply.strip()}\n")
                            shown += 1
            share = lambda col: f"{sum(a[col] for a in parts) / len(parts):.2f}" if parts else ""  # noqa: E731
            rows.append([path, task.label, f"{len(parts)} of {n_replies}"] + [share(c) for c in cols])
    print(markdown_table(["checkpoint", "benchmark", "replies that check"] + cols, rows))


if __name__ == "__main__":
    main()
