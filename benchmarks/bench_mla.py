"""Multi-head latent attention against grouped-query attention: KV-cache bytes per token (counted from the
cache r1mini allocates) and decode speed, at the cpu and gpu presets' shapes. Decoding: 64 rows of 37-43
random prompt tokens, `--new` tokens each at temperature 1 (no stop token), random weights, the dynamic
KV-cache loop; the best of 3 timed runs after a warm-up. MLA decodes in the absorbed form (the latent is
never expanded per head) and, for comparison, in the naive form (every cached latent expanded to per-head
keys and values at every step).

    OMP_NUM_THREADS=2 python benchmarks/bench_mla.py [--presets cpu,gpu] [--new 64] [--threads 2] [--device cpu]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1mini.model import KVCache, LatentAttention, Transformer, model_config  # noqa: E402
from r1mini.sampling import generate  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--presets", default="cpu,gpu")
p.add_argument("--vocab", type=int, default=774)
p.add_argument("--rows", type=int, default=64)
p.add_argument("--new", type=int, default=64)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu")
args = p.parse_args()
torch.set_num_threads(args.threads)
device = torch.device(args.device)


def cache_bytes_per_token(cfg, dtype: torch.dtype) -> int:
    """Bytes one token occupies in the cache, all layers together (an allocated 1-row, 1-slot cache)."""
    cache = KVCache(cfg, 1, 1, "cpu", dtype)
    return (cache.k.numel() + cache.v.numel()) * cache.k.element_size()


def decode_tokens_per_s(model, prompts) -> float:
    g = torch.Generator(device).manual_seed(0)
    run = lambda: generate(model, prompts, args.new, temperature=1.0, generator=g, static=False)  # noqa: E731
    run()
    best = float("inf")
    for _ in range(3):  # the best of 3: the least disturbed by other work
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return len(prompts) * args.new / best


g = torch.Generator().manual_seed(0)
prompts = [torch.randint(0, args.vocab, (37 + i % 7,), generator=g).tolist() for i in range(args.rows)]
print(f"{args.rows} rows, 37-43 prompt tokens, {args.new} new tokens, {args.threads} threads, {device}, "
      f"torch {torch.__version__}")
print("| preset | attention | params | cache values / token / layer | cache bytes / token (bf16) | decode tokens/s |")
print("|---|---|---|---|---|---|")
for preset in args.presets.split(","):
    for attn, absorb in (("gqa", True), ("mla", True), ("mla", False)):
        torch.manual_seed(0)
        cfg = model_config(preset, vocab_size=args.vocab, attn=attn)
        model = Transformer(cfg).eval().to(device)
        LatentAttention.absorb = absorb
        values = cache_bytes_per_token(cfg, torch.bfloat16) // 2 // cfg.n_layer
        name = "GQA" if attn == "gqa" else f"MLA, {'absorbed' if absorb else 'naive'} decode"
        if attn == "mla":
            name += f" (d_c {cfg.kv_lora_rank}, d_h^R {cfg.qk_rope_head_dim})"
        else:
            name += f" ({cfg.n_kv_head} kv heads x {cfg.head_dim})"
        print(f"| {preset} | {name} | {model.num_params():,} | {values} | {cache_bytes_per_token(cfg, torch.bfloat16)} "
              f"| {decode_tokens_per_s(model, prompts):,.0f} |", flush=True)
LatentAttention.absorb = True
