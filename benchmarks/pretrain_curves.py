"""Pretraining learning curves from the logs of `pretrain.py --curve_every N`: per run and check, the validation
loss and, per benchmark, dev-split pass@1 under the R1-Zero template (k samples at T 0.6), the share of replies
answered step by step and their accuracy, the accuracy of direct answers, the share that check themselves.
With several runs of one recipe (seeds), the spread of the final pass@1 across them.

    python pretrain.py --out /tmp/base_s1 --seed 1 --curve_every 100     # one run per seed
    python benchmarks/pretrain_curves.py /tmp/base_s1 /tmp/base_s2 /tmp/base_s3
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r1mini.report import markdown_table  # noqa: E402
from r1mini.jsonl import read_jsonl  # noqa: E402

_KEY = re.compile(r"dev_(.+)_(pass@1|steps_share|steps_acc|direct_acc|reflect_share)$")


def curve_rows(log: list[dict]) -> list[dict]:
    """The log rows that hold a dev check, as {step, val_loss, benchmark: {metric: value}}."""
    out = []
    for row in log:
        benches: dict[str, dict] = {}
        for key, value in row.items():
            m = _KEY.match(key)
            if m:
                benches.setdefault(m.group(1), {})[m.group(2)] = value
        if benches:
            out.append({"step": row["step"], "val_loss": row.get("val_loss"), "benches": benches})
    return out


def fmt(x) -> str:
    return "" if x is None or x != x else f"{x:.3f}" if isinstance(x, float) else str(x)


def table(run: str, rows: list[dict]) -> str:
    benches = list(rows[0]["benches"]) if rows else []
    header = ["step", "val loss"] + [f"{b} {m}" for b in benches for m in ("pass@1", "steps share", "steps acc",
                                                                         "direct acc", "checks")]
    body = [[r["step"], fmt(r["val_loss"])] + [fmt(r["benches"].get(b, {}).get(m)) for b in benches
                                              for m in ("pass@1", "steps_share", "steps_acc", "direct_acc",
                                                        "reflect_share")] for r in rows]
    return f"### {run}\n\n" + markdown_table(header, body)


def spread(runs: dict[str, list[dict]]) -> str:
    """Final dev pass@1 per benchmark in each run, and the largest difference between two runs."""
    finals = {run: rows[-1]["benches"] for run, rows in runs.items() if rows}
    if not finals:
        return ""
    benches = list(next(iter(finals.values())))
    lines = [[run] + [fmt(f.get(b, {}).get("pass@1")) for b in benches] for run, f in finals.items()]
    values = {b: [f[b]["pass@1"] for f in finals.values() if b in f] for b in benches}
    lines.append(["spread (max - min)"] + [fmt(max(v) - min(v)) for v in values.values()])
    return markdown_table(["run (last check)"] + [f"{b} pass@1" for b in benches], lines)


def main(paths: list[str]) -> None:
    runs = {path: curve_rows(read_jsonl(Path(path) / "log.jsonl")) for path in paths}
    for run, rows in runs.items():
        print(table(run, rows) + "\n")
    print(spread(runs))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
