"""The ablation table of benchmarks/ablation_v3.sh, from its runs' checkpoints and logs: per variant, the
parameters, the pretraining's final validation loss (the next-token loss only; MTP's own loss beside it),
its throughput and time, R1-Zero's held-out pass@1 before and after, with a 95% interval, and its time.

    python benchmarks/ablation_table.py out/ablation
"""
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1mini.checkpoint import load_checkpoint  # noqa: E402
from r1mini.tasks import suite  # noqa: E402


def rows(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def heldout_problems(meta: dict) -> int:
    """Problems behind R1-Zero's held-out pass@1: eval_problems per task of the suite (English prompts)."""
    return meta["config"]["eval_problems"] * len(suite(meta["config"]["suite"] or meta["base_config"]["suite"]))


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a rate p over n problems: conservative here, as each problem's k samples make
    its pass rate less noisy than one Bernoulli draw, and sensible at p = 0 (unlike p +- 1.96 se)."""
    center, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (center - half) / (1 + z * z / n), (center + half) / (1 + z * z / n)


def main(out: Path) -> None:
    print("| variant | params | val loss | MTP val loss | pretrain tokens/s | pretrain s | pass@1 base "
          "| pass@1 R1-Zero | 95% interval | R1-Zero s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for variant in ("gqa", "mla", "mtp", "mla_mtp"):
        base, zero = out / variant / "base", out / variant / "zero"
        if not (zero / "meta.json").exists():
            print(f"| {variant} | not run |")
            continue
        pre = [r for r in rows(base / "log.jsonl") if "val_loss" in r][-1]
        evals = [r for r in rows(zero / "log.jsonl") if "eval_pass@1" in r]
        meta = json.loads((zero / "meta.json").read_text())
        params = load_checkpoint(base, "cpu")[0].num_params()
        p, n = evals[-1]["eval_pass@1"], heldout_problems(meta)
        low, high = wilson(p, n)
        print(f"| {variant} | {params:,} | {pre['val_loss']:.4f} | {pre.get('val_mtp_loss', '-')} "
              f"| {pre['tokens_per_s']:,} | {pre['time']:.0f} | {evals[0]['eval_pass@1']:.3f} | {p:.3f} "
              f"| {low:.3f}-{high:.3f} | {evals[-1]['time']:.0f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/ablation"))
