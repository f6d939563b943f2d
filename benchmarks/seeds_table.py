"""Two or more speedruns of different seeds side by side: each checkpoint's pass@1 per benchmark with its 95%
interval, one column per run, then each finding's verdict and difference per run.

    SEED=1 OUT=/tmp/seed1 bash speedrun.sh cpu && SEED=2 OUT=/tmp/seed2 bash speedrun.sh cpu
    python benchmarks/seeds_table.py /tmp/seed1 /tmp/seed2

Reads each run's report.json (python -m r1mini.report OUT writes it); prints markdown.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r1mini.report import interval, markdown_table  # noqa: E402


def main(outs: list[str]) -> None:
    reports = [json.loads((Path(o) / "report.json").read_text()) for o in outs]
    names = [Path(o).name for o in outs]
    first = reports[0]
    benches = [c for c in next(iter(first["table"].values())) if c.endswith(" pass@1") and c != "pass@1"]
    rows = []
    for model in first["table"]:
        for bench in benches:
            cells = []
            for r in reports:
                value, ci = r["table"].get(model, {}).get(bench), r["intervals"].get(model, {}).get(bench)
                cells.append("" if value is None else f"{value:.3f}" + (f" {interval(ci)}" if ci else ""))
            rows.append([model, bench.removesuffix(" pass@1")] + cells)
    print(markdown_table(["model", "benchmark"] + [f"pass@1, {n}" for n in names], rows))
    print()
    claims = [f["claim"] for f in first["findings"]]
    rows = []
    for claim in claims:
        cells = []
        for r in reports:
            f = next((f for f in r["findings"] if f["claim"] == claim), None)
            cells.append("" if f is None else f["verdict"] + (f" ({f['difference']:+.3f}, {interval(f['interval'])})"
                                                             if "interval" in f else f" ({f['detail']})"))
        rows.append([claim] + cells)
    print(markdown_table(["finding"] + names, rows))
    print()
    print(markdown_table(["stage"] + names, [[stage] + [f"{r['times'].get(stage, 0):.0f}" for r in reports]
                                            for stage in first["times"]]
                         + [["total"] + [f"{sum(r['times'].values()):.0f}" for r in reports]]))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python benchmarks/seeds_table.py OUT_DIR [OUT_DIR ...]")
    main(sys.argv[1:])
