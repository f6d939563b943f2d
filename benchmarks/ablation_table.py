"""The ablation table of benchmarks/ablation_v3.sh, from its runs' logs: per variant, parameters, the
pretraining's final validation loss (next-token loss only) and its throughput, R1-Zero's final held-out
pass@1 with a 95% interval, and the wall time of each stage.

    python benchmarks/ablation_table.py out/ablation
"""
import json
import math
import sys
from pathlib import Path


def last_with(log: Path, key: str) -> dict:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in rows if key in r][-1]


def main(out: Path) -> None:
    print("| variant | val loss (pretrain) | MTP val loss | pretrain tok/s | pretrain s | held-out pass@1 (R1-Zero) "
          "| 95% interval | R1-Zero s |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in ("gqa", "mla", "mtp", "mla_mtp"):
        base, zero = out / variant / "base", out / variant / "zero"
        if not (zero / "log.jsonl").exists():
            print(f"| {variant} | not run |")
            continue
        pre = last_with(base / "log.jsonl", "val_loss")
        meta = json.loads((zero / "meta.json").read_text())
        ev = last_with(zero / "log.jsonl", "eval_pass@1")
        p, n = ev["eval_pass@1"], eval_samples(meta)
        half = 1.96 * math.sqrt(p * (1 - p) / n)  # a normal interval over the samples (problems x k)
        print(f"| {variant} | {pre['val_loss']:.4f} | {pre.get('val_mtp_loss', '-')} | {pre['tokens_per_s']} "
              f"| {pre['time']:.0f} | {p:.3f} | {max(0, p - half):.3f}-{min(1, p + half):.3f} | {ev['time']:.0f} |")


def eval_samples(meta: dict) -> int:
    """Samples behind R1-Zero's held-out pass@1: problems per task x tasks x k (English prompts)."""
    config = meta["config"]
    return config["eval_problems"] * config["eval_k"] * len(meta.get("eval_tasks", [None]))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/ablation"))
