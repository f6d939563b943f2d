"""Where one decode step's time goes: the operations of `generate`'s dynamic decode loop at a rollout shape,
counted per step and per layer, with each operation's time and the time spent outside operations (Python).

Two shapes: `cpu` is the cpu preset's R1-Zero rollout (64 rows, 37-43 prompt tokens, 208 new tokens), `trl`
the TRL comparison's (bench_trl.py: the same 0.8M-parameter model, 64 rows, 96 new tokens). Random weights,
temperature 1, every row decodes every token (no stop token), so every step has the full batch.

    OMP_NUM_THREADS=2 python benchmarks/profile_decode.py [--shape cpu|trl] [--threads 2] [--top 25]

How it counts: torch.profiler records every aten operation of one generate call; a step is one decode
forward (the model's forward, which the prefill does not call) plus the sampling and bookkeeping around it.
"Operations" are the ones Python calls (the profiler's top-level events; an operation's own sub-operations,
such as linear's mm, are not counted again); "aten calls" counts the innermost ones they make, views and
allocations included. Time in Python is the step's wall time measured *without* the
profiler minus the time inside operations measured with it (the profiler inflates the latter a little, so
the Python share is, if anything, underestimated).
"""
import argparse
import contextlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import r1mini.sampling as sampling  # noqa: E402
from r1mini.model import Transformer, model_config  # noqa: E402

SHAPES = {"cpu": dict(rows=64, new=208), "trl": dict(rows=64, new=96)}

p = argparse.ArgumentParser()
p.add_argument("--shape", choices=sorted(SHAPES), default="cpu")
p.add_argument("--model", default="cpu")
p.add_argument("--vocab", type=int, default=773)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--top", type=int, default=25, help="operations listed, the most expensive first")
p.add_argument("--repeats", type=int, default=3, help="unprofiled runs; their median wall time is used")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
shape = SHAPES[args.shape]
cfg = model_config(args.model, vocab_size=args.vocab)
model = Transformer(cfg).eval()
g = torch.Generator().manual_seed(0)
distinct = [torch.randint(0, args.vocab, (37 + i % 7,), generator=g).tolist() for i in range(shape["rows"] // 8)]
prompts = [p for p in distinct for _ in range(8)]  # 8 samples of each prompt, as GRPO rolls out
new = min(shape["new"], cfg.block_size - max(map(len, prompts)))


def run():
    return sampling.generate(model, prompts, new, temperature=1.0, generator=g, static=False)


def wall_per_step() -> float:
    """Median over repeats of (generate's time - the prefill's) / steps, without the profiler."""
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        with torch.no_grad():  # the prefill alone, as generate runs it
            sampling.generate(model, prompts, 1, temperature=1.0, generator=g, static=False)
        t2 = time.perf_counter()
        times.append(((t1 - t0) - (t2 - t1)) / (new - 1))
    return sorted(times)[len(times) // 2]


@contextlib.contextmanager
def labelled():
    """Label the decode forwards, each block of them and the sampler, so their operations can be told apart."""
    handles, stack = [], []

    def enter(name):
        def pre(module, inputs, *kw):
            stack.append(record_function(name))
            stack[-1].__enter__()
        return pre

    def leave(module, inputs, output, *kw):
        stack.pop().__exit__(None, None, None)

    handles.append(model.register_forward_pre_hook(enter("decode forward")))
    handles.append(model.register_forward_hook(leave))
    for block in model.blocks:
        handles.append(block.register_forward_pre_hook(enter("block")))
        handles.append(block.register_forward_hook(leave))
    original = sampling.sample_next

    def sample_next(*a, **kw):
        with record_function("sample"):
            return original(*a, **kw)
    sampling.sample_next = sample_next
    try:
        yield
    finally:
        sampling.sample_next = original
        for h in handles:
            h.remove()


def region(event) -> str:
    """The label an operation runs under (its innermost), or 'loop' for the decode loop's own operations."""
    labels = []
    while event.cpu_parent is not None:
        event = event.cpu_parent
        labels.append(event.name)
    for name in labels:
        if name in ("block", "sample"):
            return name
    return "forward" if "decode forward" in labels else "loop"


def is_operation(event) -> bool:
    """An aten operation called from Python: its parent, if any, is one of our labels."""
    return event.name.startswith("aten::") and (event.cpu_parent is None or
                                                not event.cpu_parent.name.startswith("aten::"))


def aten_calls(event) -> int:
    """The innermost aten calls an operation makes, itself when it calls no other: compute kernels and also
    views and allocations (F.rms_norm: a dozen, linear: an mm and a transpose)."""
    children = [c for c in event.cpu_children if c.name.startswith("aten::")]
    return sum(aten_calls(c) for c in children) if children else 1


run()  # warm-up
wall = wall_per_step()
with labelled(), profile(activities=[ProfilerActivity.CPU]) as prof:
    run()
events = prof.events()
forwards = sum(1 for e in events if e.name == "decode forward")
steps = forwards  # one decode forward per step (the first token comes from the prefill's logits)
ops = [e for e in events if is_operation(e)]
# the prefill and the final token extraction: operations before the first decode forward, after the last
first = min(e.time_range.start for e in events if e.name == "decode forward")
last = max(e.time_range.end for e in events if e.name == "decode forward")
ops = [e for e in ops if first <= e.time_range.start and e.time_range.end <= last + 1]
count, leaves, time_us = defaultdict(int), defaultdict(int), defaultdict(float)
by_op = defaultdict(lambda: [0, 0.0])
for e in ops:
    r = region(e)
    count[r] += 1
    leaves[r] += aten_calls(e)
    time_us[r] += e.cpu_time_total
    by_op[(r, e.name)][0] += 1
    by_op[(r, e.name)][1] += e.cpu_time_total
in_ops = sum(time_us.values()) / steps / 1e3
print(f"shape {args.shape}: {shape['rows']} rows, prompts 37-43 tokens, {new} new tokens; model {args.model} "
      f"({model.num_params():,} params, {cfg.n_layer} layers, width {cfg.n_embd}, heads {cfg.n_head}/{cfg.n_kv_head}, "
      f"vocab {args.vocab}); {args.threads} threads; {steps} decode steps profiled")
print(f"decode step: {wall * 1e3:.2f} ms wall (median of {args.repeats}, no profiler); {in_ops:.2f} ms inside "
      f"operations (profiled); Python and the rest {max(0.0, wall * 1e3 - in_ops):.2f} ms "
      f"({max(0.0, 1 - in_ops / (wall * 1e3)):.0%})")
print(f"{'where':10s} {'ops/step':>9s} {'aten calls':>13s} {'ms/step':>8s}")
for r, n_layers in (("block", cfg.n_layer), ("forward", 1), ("sample", 1), ("loop", 1)):
    label = f"{r} (x{n_layers})" if n_layers > 1 else r
    print(f"{label:10s} {count[r] / steps:9.1f} {leaves[r] / steps:13.1f} {time_us[r] / steps / 1e3:8.3f}"
          + (f"   per layer: {count[r] / steps / n_layers:.1f} ops, {leaves[r] / steps / n_layers:.1f} aten calls, "
             f"{time_us[r] / steps / n_layers / 1e3:.3f} ms" if n_layers > 1 else ""))
print(f"{'total':10s} {sum(count.values()) / steps:9.1f} {sum(leaves.values()) / steps:13.1f} {in_ops:8.3f}")
print(f"\n{'where':8s} {'operation':48s} {'calls/step':>10s} {'us/call':>8s} {'ms/step':>8s}")
for (r, name), (n, us) in sorted(by_op.items(), key=lambda kv: -kv[1][1])[:args.top]:
    print(f"{r:8s} {name:48s} {n / steps:10.1f} {us / n:8.1f} {us / steps / 1e3:8.3f}")
