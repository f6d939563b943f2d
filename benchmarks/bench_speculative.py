"""Rollout speed with and without speculative decoding by the MTP draft, and the draft's acceptance rate,
on pretrained checkpoints with an MTP module: R1-Zero's rollout shape (8 held-out problems x 8 samples at
temperature 1, under the R1-Zero template, up to --new tokens, stopping at end of text), the dynamic
KV-cache loop against decode_speculative. Tokens/s counts the tokens the rows actually got (up to their stop
token); the best of 3 timed runs after a warm-up, the same seeds each way. The acceptance rate is from the
timed runs.

    OMP_NUM_THREADS=2 python benchmarks/bench_speculative.py --init out/ablation/mtp/base,out/ablation/mtp/zero
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1mini.checkpoint import load_checkpoint  # noqa: E402
from r1mini.evaluate import heldout_problems  # noqa: E402
from r1mini.formats import prompt_ids  # noqa: E402
from r1mini.sampling import generate  # noqa: E402
from r1mini.tasks import suite  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--init", required=True, help="checkpoints with an MTP module, comma-separated")
p.add_argument("--prompts", type=int, default=8)
p.add_argument("--samples", type=int, default=8)
p.add_argument("--new", type=int, default=128)
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)


def timed(model, prompts, stop, speculative: bool) -> tuple[float, int, dict]:
    """(best seconds, tokens generated, draft counts of the timed runs)."""
    best, stats = float("inf"), {}
    for i in range(4):  # a warm-up, then 3 timed runs
        run_stats = {} if i else None
        t0 = time.perf_counter()
        out = generate(model, prompts, args.new, temperature=1.0, stop_ids=stop, pad_id=stop[0],
                       generator=torch.Generator().manual_seed(i), speculative=speculative, stats=run_stats)
        if i:
            best = min(best, time.perf_counter() - t0)
            for k, v in run_stats.items():
                stats[k] = stats.get(k, 0) + v
    return best, sum(map(len, out)), stats


print(f"{args.prompts} prompts x {args.samples} samples, up to {args.new} new tokens, temperature 1, "
      f"{args.threads} threads, torch {torch.__version__}")
print("| checkpoint | plain tokens/s | speculative tokens/s | speed-up | draft acceptance |")
print("|---|---|---|---|---|")
for init in args.init.split(","):
    model, tokenizer, meta = load_checkpoint(init, "cpu")
    if not model.cfg.mtp_depth:
        raise SystemExit(f"{init} has no MTP module: pretrain one with --mtp_depth 1")
    tasks = suite(meta.get("config", {}).get("suite") or meta.get("base_config", {}).get("suite") or "cpu")
    problems = heldout_problems(tasks, args.prompts, seed=0)[:args.prompts]
    stop = prompt_ids(tokenizer, "", False)[1]
    prompts = [prompt_ids(tokenizer, pr.question, False)[0] for pr in problems for _ in range(args.samples)]
    t_plain, n_plain, _ = timed(model, prompts, stop, speculative=False)
    t_spec, n_spec, stats = timed(model, prompts, stop, speculative=True)
    plain, spec = n_plain / t_plain, n_spec / t_spec
    print(f"| {init} ({model.cfg.attn}) | {plain:,.0f} | {spec:,.0f} | {spec / plain:.2f}x "
          f"| {stats['accepted'] / stats['drafted']:.3f} |", flush=True)
