"""Training throughput per model preset: tokens/s and achieved FLOP/s (model.flops_per_token, the 6N +
attention estimate) against this machine's measured fp32 matmul peak (a large square matmul, timed).

    OMP_NUM_THREADS=2 python benchmarks/bench_train.py [--presets toy,cpu] [--batch 16] [--steps 5]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1mini.device import pick_device, throughput  # noqa: E402
from r1mini.model import Transformer, model_config  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--presets", default="toy,cpu")
p.add_argument("--batch", type=int, default=16)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--vocab", type=int, default=773)  # the cpu preset's 768 BPE ranks + 5 special tokens
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu")
args = p.parse_args()
torch.set_num_threads(args.threads)
device = pick_device(args.device)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


n = 2048 if device.type == "cpu" else 8192
a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
a @ b
sync()
t0 = time.perf_counter()
for _ in range(3):
    a @ b
sync()
peak = 3 * 2 * n ** 3 / (time.perf_counter() - t0)
print(f"device {device}, {args.threads} threads: measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s ({n}x{n})")
print(f"{'preset':8s} {'params':>9s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'of peak':>8s}")
for name in args.presets.split(","):
    torch.manual_seed(0)
    model = Transformer(model_config(name, vocab_size=args.vocab)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    T = model.cfg.block_size
    x = torch.randint(0, args.vocab, (args.batch, T + 1), device=device)

    def step():
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    tok_s = args.steps * args.batch * T / (time.perf_counter() - t0)
    flops = tok_s * model.flops_per_token()
    print(f"{name:8s} {model.num_params():9,d} {tok_s:9.0f} {flops / 1e9:8.2f} {flops / peak:8.1%}  "
          f"{throughput(tok_s, model.flops_per_token(), device)}")
