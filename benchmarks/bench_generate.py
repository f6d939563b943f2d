"""Generation speed at the cpu preset's rollout shape: r1mini's KV-cache generate (the dynamic decode loop,
and the static-shape one that CUDA runs as CUDA graphs), full recompute, and Hugging Face transformers'
LlamaForCausalLM.generate on a random Llama of the same shape (skipped without transformers). Every method
samples 64 rows (8 prompts x 8 samples) of ~40 prompt tokens for exactly 128 new tokens (no stop token), from
random weights. On CUDA the static loop's first (untimed) call compiles it.

    OMP_NUM_THREADS=2 python benchmarks/bench_generate.py [--model cpu] [--threads 2] [--new 128] [--device cpu]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1mini.model import Transformer, model_config  # noqa: E402
from r1mini.sampling import generate, sample_next  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", default="cpu")
p.add_argument("--vocab", type=int, default=773)  # the cpu preset's 768 BPE ranks + 5 special tokens
p.add_argument("--prompts", type=int, default=8)
p.add_argument("--samples", type=int, default=8)
p.add_argument("--prompt_len", type=int, default=40)
p.add_argument("--new", type=int, default=128)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
device = torch.device(args.device)
cfg = model_config(args.model, vocab_size=args.vocab)
model = Transformer(cfg).eval().to(device)
g = torch.Generator().manual_seed(0)
prompts = [torch.randint(0, args.vocab, (args.prompt_len - 3 + i % 7,), generator=g).tolist()
           for i in range(args.prompts) for _ in range(args.samples)]  # 37..43 tokens, groups of 8 alike
g = torch.Generator(device).manual_seed(0)  # for sampling, on the model's device
B, n_tokens = len(prompts), len(prompts) * args.new
print(f"model {args.model}: {model.num_params():,} params, {cfg.n_layer} layers, dim {cfg.n_embd}, heads "
      f"{cfg.n_head}/{cfg.n_kv_head} kv, ffn {cfg.ffn_hidden}, vocab {args.vocab}; batch {B}, "
      f"prompts {min(map(len, prompts))}-{max(map(len, prompts))} tokens, {args.new} new; {args.threads} threads, "
      f"{device}")


def timed(fn, repeats=5, warmup=True):  # the best of several runs: the least disturbed by other work
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def recompute():
    """Full recompute: every new token runs the whole (left-padded) batch through the model again."""
    P = max(map(len, prompts))
    idx = torch.tensor([[0] * (P - len(q)) + q for q in prompts], device=device)
    for _ in range(args.new):
        tok = sample_next(model(idx)[:, -1], 1.0, 1.0, g)
        idx = torch.cat([idx, tok[:, None]], 1)
    return idx


def r1mini(static: bool):
    return lambda: generate(model, prompts, args.new, temperature=1.0, generator=g, static=static)


results = {}
results["r1mini generate (KV cache)"] = timed(r1mini(static=False))
results["r1mini generate, static shapes"] = timed(r1mini(static=True))  # CUDA graphs on cuda
results["full recompute, no cache"] = timed(recompute, repeats=1, warmup=False)  # slow: one run
try:
    from transformers import LlamaConfig, LlamaForCausalLM
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=args.vocab, hidden_size=cfg.n_embd, intermediate_size=cfg.ffn_hidden,
                                      num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                                      num_key_value_heads=cfg.n_kv_head, max_position_embeddings=cfg.block_size,
                                      rope_theta=cfg.rope_theta, rms_norm_eps=cfg.norm_eps,
                                      tie_word_embeddings=cfg.tie_embeddings)).eval().to(device)
    P = max(map(len, prompts))
    ids = torch.tensor([[0] * (P - len(q)) + q for q in prompts], device=device)
    mask = torch.tensor([[0] * (P - len(q)) + [1] * len(q) for q in prompts], device=device)
    hf_gen = lambda: hf.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=args.new,
                                 min_new_tokens=args.new, pad_token_id=0)
    with torch.no_grad():
        results["HF LlamaForCausalLM.generate"] = timed(hf_gen)
except ImportError:
    print("transformers is not installed: skipping the Hugging Face comparison (pip install transformers)")

print(f"{'method':32s} {'seconds':>8s} {'tokens/s':>9s}")
for name, t in results.items():
    print(f"{name:32s} {t:8.2f} {n_tokens / t:9.0f}")
ours = results["r1mini generate (KV cache)"]
print(f"static shapes over the dynamic loop: {ours / results['r1mini generate, static shapes']:.2f}x")
for name, t in results.items():
    if not name.startswith("r1mini"):
        print(f"r1mini speed-up over {name}: {t / ours:.2f}x")
