"""The RL-only student's settings, chosen on the dev split: a small grid of R1-Zero runs on the student's base.

Table 6 compares a student distilled from R1 with the same student trained by RL alone. RL alone is only a fair
baseline with settings chosen for the student: its learning rate and reply length were tuned for the teacher.
This script runs train_zero.py on the student base once per grid point (the speedrun's step budget) and reads
each run's dev-split pass@1 from its log (train_zero.py checks the dev split, never the test split); the best
run's flags are what speedrun.sh's STUDENT_RL_FLAGS should say.

    python benchmarks/sweep_student_rl.py --init out/student_base --out /tmp/sweep
    python benchmarks/sweep_student_rl.py --init out/student_base --out /tmp/sweep --lr 1e-4,3e-4 \
        --max_new_tokens 176 --parallel 2

Prints one row per run (the last dev pass@1, the best over the run, the last training accuracy and length) and
writes sweep.json under --out. Reruns skip the runs that are complete. --parallel 2 runs two at a time with
one thread each (on 2 cores, two 2-thread runs at once thrash: one ran 25 s a step instead of about 1).
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r1mini.report import markdown_table  # noqa: E402
from r1mini.jsonl import read_jsonl  # noqa: E402


def run_summary(log: list[dict]) -> dict:
    """The figures a grid point is chosen on: dev pass@1 at the last check (the choice) and its best."""
    dev = [r["eval_pass@1"] for r in log if r.get("eval_pass@1") is not None]
    train = [r for r in log if "reward" in r]
    return {"dev pass@1 last": dev[-1] if dev else float("nan"), "dev pass@1 best": max(dev, default=float("nan")),
            "train accuracy (last 10)": sum(r["accuracy"] for r in train[-10:]) / max(1, len(train[-10:])),
            "length (last 10)": sum(r["length"] for r in train[-10:]) / max(1, len(train[-10:]))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", default="out/student_base", help="the student's base checkpoint")
    p.add_argument("--out", default="out/student_sweep", help="one run directory per grid point, and sweep.json")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--lr", default="3e-5,1e-4,3e-4", help="learning rates, comma-separated")
    p.add_argument("--max_new_tokens", default="128,176", help="reply lengths, comma-separated")
    p.add_argument("--format_weight", default="1.0", help="format reward weights, comma-separated")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (each then gets one thread)")
    args, extra = p.parse_known_args(argv)  # anything else goes to every train_zero.py run
    out = Path(args.out)
    points = itertools.product(args.lr.split(","), args.max_new_tokens.split(","), args.format_weight.split(","))
    grid = [(["--lr", lr, "--max_new_tokens", length, "--format_weight", fw] + extra,
             out / f"lr{lr}_len{length}_fw{fw}") for lr, length, fw in points]
    todo = [(flags, run) for flags, run in grid
            if not ((run / "meta.json").exists() and json.loads((run / "meta.json").read_text()).get("done"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.parallel > 1 else None
    for i in range(0, len(todo), args.parallel):
        running = []
        for flags, run in todo[i:i + args.parallel]:
            cmd = [args.python, str(ROOT / "train_zero.py"), "--preset", args.preset, "--init", args.init,
                   "--out", str(run)] + flags
            print(" ".join(cmd), flush=True)
            running.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        if any([proc.wait() for proc in running]):  # a list: wait for every one
            raise SystemExit("a run failed: rerun its command (printed above) to see why")
    rows, record = [], []
    for flags, run in grid:
        summary = run_summary(read_jsonl(run / "log.jsonl"))
        record.append({"flags": " ".join(flags), **summary})
        rows.append([" ".join(flags)] + list(summary.values()))
    best = max(record, key=lambda r: r["dev pass@1 last"])
    print(markdown_table(["flags"] + list(record[0])[1:], rows))
    print(f"\nbest on the dev split: {best['flags']}")
    (out / "sweep.json").write_text(json.dumps({"runs": record, "best": best}, indent=1) + "\n")


if __name__ == "__main__":
    main()
