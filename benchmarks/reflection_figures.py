"""Does checking pay? The figures behind the README's reflection finding, from a speedrun's outputs.

    python benchmarks/reflection_figures.py out [out_seed1 ...]

Per run: on the test split (eval.json, temperature 0.6), each checkpoint's share of replies that reflect and
their accuracy beside step-by-step replies that do not (steps_acc pools both, so the second is recovered from
the shares, taking every reply that checks to be step by step, as the corpus writes them); during R1-Zero
(zero/log.jsonl, rollouts at temperature 1), the mean over steps of the accuracy of replies that reflect and
of those that do not, and reflection words per reply, in thirds of the run.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r1mini.report import markdown_table  # noqa: E402
from r1mini.jsonl import read_jsonl  # noqa: E402


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def fmt(x):
    return "" if x is None else f"{x:.3f}"


def test_split(out: Path) -> list[list]:
    """Per checkpoint (base, R1-Zero) and benchmark: reflect share, reflect acc, steps-without-check acc."""
    evals = json.loads((out / "eval.json").read_text())
    rows = []
    for name in ("base", "zero"):
        entry = next(v for k, v in evals.items() if Path(k).name == name)
        for bench, r in entry["results"].items():
            plain_steps = r["steps_share"] - r["reflect_share"]
            steps_plain_acc = None
            if plain_steps > 1e-9 and r["steps_acc"] is not None:
                steps_plain_acc = (r["steps_share"] * r["steps_acc"] - r["reflect_share"] * (r["reflect_acc"] or 0)) \
                    / plain_steps
            rows.append([name, bench, fmt(r["reflect_share"]), fmt(r["reflect_acc"]), fmt(steps_plain_acc),
                         fmt(r["plain_acc"])])
    return rows


def training(out: Path, parts: int = 3) -> list[list]:
    log = [r for r in read_jsonl(out / "zero" / "log.jsonl") if "accuracy" in r]
    size = -(-len(log) // parts)
    rows = []
    for i in range(0, len(log), size):
        seg = log[i:i + size]
        rows.append([f"{seg[0]['step']}-{seg[-1]['step']}", fmt(mean(r["reflection"] for r in seg)),
                     fmt(mean(r.get("reflect_acc") for r in seg)), fmt(mean(r.get("plain_acc") for r in seg)),
                     sum(r.get("reflect_acc") is not None for r in seg)])
    return rows


def main(outs):
    for out in map(Path, outs):
        print(f"## {out}\n\nTest split, temperature 0.6:\n")
        print(markdown_table(["checkpoint", "benchmark", "reflect share", "reflect acc",
                              "steps without check acc", "all without check acc"], test_split(out)))
        print("\nR1-Zero training, rollouts at temperature 1 (means over steps):\n")
        print(markdown_table(["steps", "reflection words", "reflect acc", "plain acc", "steps with a reflecting reply"],
                             training(out)))
        print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python benchmarks/reflection_figures.py OUT_DIR [OUT_DIR ...]")
    main(sys.argv[1:])
