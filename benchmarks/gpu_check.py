"""The checks of benchmarks/gpu_check.sh, one per call, each printing one line `RESULT {json}` whose figures
docs/gpu.md can quote. Random weights at the gpu preset's sizes (vocabulary 2056: 2048 BPE ranks and 8 special
tokens), the shapes the gpu preset really runs.

    python benchmarks/gpu_check.py decode     # ms per decode step at the rollout shape, compile time, graphs
                                              # compiled, CUDA-graph skips; then the memory left once the
                                              # model is dropped
    python benchmarks/gpu_check.py grpo       # ratio_dev of an update with mu 2 and a KL term; a compiled
                                              # update (torch.compile, dynamic shapes): compile s, update s
    python benchmarks/gpu_check.py float32    # the path of a GPU without bf16, forced: float32 cache, decode
                                              # and an update
    python benchmarks/gpu_check.py cap 24     # one whole R1-Zero GRPO step (rollout + update) with this
                                              # process capped at 24 GiB: micro-batch, peak memory, or the OOM
    python benchmarks/gpu_check.py ddp        # a GRPO update through DDP on one NCCL rank

`--device cpu --model toy` runs any of them on the CPU at toy size (tests/test_benchmarks.py does), where
the figures mean nothing but the code runs.
"""
import argparse
import contextlib
import gc
import json
import os
import socket
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train_zero  # noqa: E402
from r1mini import device as device_module  # noqa: E402
from r1mini import memory, sampling  # noqa: E402
from r1mini.model import Transformer, model_config  # noqa: E402
from r1mini.rl import GRPOConfig, Rollout, grpo_step, grpo_update, make_policy  # noqa: E402
from r1mini.stage import step_guard  # noqa: E402

VOCAB = 2056
PROMPT = 40  # tokens of a task prompt at the gpu suite


def result(check: str, **figures) -> None:
    print("RESULT " + json.dumps({"check": check, **figures}), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_model(preset: str, device: torch.device) -> Transformer:
    torch.manual_seed(0)
    return Transformer(model_config(preset, vocab_size=VOCAB)).to(device)


def prompts(rows: int, group: int = 16) -> list[list[int]]:
    """rows prompts of 37-43 tokens, in groups of `group` alike (a rollout's shape)."""
    g = torch.Generator().manual_seed(0)
    return [torch.randint(8, VOCAB, (PROMPT - 3 + (i // group) % 7,), generator=g).tolist() for i in range(rows)]


def timed(fn, device: torch.device) -> tuple[float, object]:
    """(seconds, what fn returned), the device's queue drained before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def compile_counters() -> dict:
    from torch._dynamo.utils import counters
    return {"graphs": counters["stats"]["unique_graphs"], "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


def ms_per_step(model, rows: list[list[int]], device: torch.device, static: bool, long: int, short: int) -> float:
    """The decode step's cost alone: two generations that differ only in their number of steps (no stop
    token, so every row runs them all), the difference divided by the extra steps (prefill and the first
    call's costs cancel)."""
    gen = lambda n: sampling.generate(model, rows, n, temperature=1.0, static=static)  # noqa: E731
    t_long, t_short = timed(lambda: gen(long), device)[0], timed(lambda: gen(short), device)[0]
    return 1000 * (t_long - t_short) / (long - short)


def check_decode(args, device):
    """The rollout's decode step at the gpu preset: 32 prompts x 16 samples = 512 rows."""
    rows = train_zero.PRESETS["gpu"]["prompts_per_step"] * train_zero.PRESETS["gpu"]["group_size"]
    rows = rows if args.model == "gpu" else 8
    model = random_model(args.model, device).eval()
    batch = prompts(rows)
    before = compile_counters()
    first, _ = timed(lambda: sampling.generate(model, batch, 4, static=True), device)  # compiles, records
    compiled = compile_counters()
    graph_ms = ms_per_step(model, batch, device, True, 72, 8)
    other_lengths = [p[:-2] for p in batch]  # the same batch size, other prompt lengths: no new graph
    sampling.generate(model, other_lengths, 4, static=True)
    after = compile_counters()
    eager_ms = ms_per_step(model, batch, device, False, 24, 8)
    pools = memory.graph_pool_bytes(device)
    held = {"static_caches_gib": (memory.held_bytes(device) - pools) / memory.GiB,
            "graph_pools_gib": pools / memory.GiB}
    del model
    gc.collect()
    left = {}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        left = {"allocated_after_drop_mib": torch.cuda.memory_allocated(device) / 2 ** 20,
                "reserved_after_drop_mib": torch.cuda.memory_reserved(device) / 2 ** 20,
                "graph_pool_after_drop_mib": memory.graph_pool_bytes(device) / 2 ** 20}
    result("decode", rows=rows, first_call_s=round(first, 1), graph_ms_per_step=round(graph_ms, 3),
           eager_ms_per_step=round(eager_ms, 3), tokens_per_s_graph=round(rows * 1000 / graph_ms),
           graphs_compiled=compiled["graphs"] - before["graphs"], recompiles=after["graphs"] - compiled["graphs"],
           cudagraph_skips=after["cudagraph_skips"] - before["cudagraph_skips"],
           held_before_drop={k: round(v, 3) for k, v in held.items()}, **{k: round(v, 1) for k, v in left.items()})


def synthetic_rollout(rows: int, new: int, device: torch.device) -> tuple[Rollout, torch.Tensor]:
    """rows of PROMPT + up to `new` tokens, responses of every length from a tenth of `new` to all of it."""
    g = torch.Generator().manual_seed(1)
    T = PROMPT + new
    ids = torch.randint(8, VOCAB, (rows, T), generator=g)
    mask = torch.zeros(rows, T - 1, dtype=torch.bool)
    lengths = torch.linspace(new // 10, new, rows).long()
    for i, n in enumerate(lengths.tolist()):
        mask[i, PROMPT - 1:PROMPT - 1 + n] = True
    advantages = torch.randn(rows, generator=g).to(device)
    return Rollout(ids.to(device), mask.to(device), [""] * rows, lengths.tolist()), advantages


def check_grpo(args, device):
    """ratio_dev with mu 2 and a KL term, eager; then a compiled update (what --compile true runs)."""
    rows, new = (128, train_zero.PRESETS["gpu"]["max_new_tokens"]) if args.model == "gpu" else (8, 16)
    ro, adv = synthetic_rollout(rows, new, device)
    keep = torch.ones(rows, dtype=torch.bool, device=device)
    figures = {}
    for compiled in (False, True):
        cfg = GRPOConfig(max_new_tokens=new, mu=2, kl_coef=0.01, compile=compiled)
        policy = make_policy(random_model(args.model, device), cfg, device)
        (first, _), (second, stats) = (timed(lambda: grpo_update(policy, ro, adv, keep, cfg), device)
                                       for _ in range(2))  # the first compiles, when compiled
        name = "compiled" if compiled else "eager"
        figures[f"{name}_ratio_dev"] = stats["ratio_dev"]
        figures[f"{name}_first_update_s"] = round(first, 2)
        figures[f"{name}_update_s"] = round(second, 2)
        figures[f"{name}_train_tokens_per_s"] = round(2 * ro.ids.numel() / second)  # mu 2 passes
        del policy
        gc.collect()
    result("grpo", rows=rows, tokens=ro.ids.size(1), **figures)



def check_float32(args, device):
    """A GPU without bf16 (a T4): its path forced on this one. Float32 cache and forwards; decode and an
    update must run (the student's sizes, to keep the compile short)."""
    device_module._gpu_has_bf16 = lambda index: False
    preset = "gpu-student" if args.model == "gpu" else args.model
    model = random_model(preset, device).eval()
    batch = prompts(64 if args.model == "gpu" else 4)
    sampling.generate(model, batch, 4, static=True)  # compiles
    dtypes = sorted({str(dtype) for _, _, dtype in sampling._static_caches[model]})
    decode_ms = ms_per_step(model, batch, device, True, 40, 8)
    ro, adv = synthetic_rollout(len(batch), 64, device)
    cfg = GRPOConfig(max_new_tokens=64)
    policy = make_policy(model, cfg, device)
    keep = torch.ones(len(batch), dtype=torch.bool, device=device)
    update_s, _ = timed(lambda: grpo_update(policy, ro, adv, keep, cfg), device)
    result("float32", model=preset, uses_bf16=device_module.uses_bf16(device), cache_dtypes=dtypes,
           decode_ms_per_step=round(decode_ms, 3), update_s=round(update_s, 2))


class StandInTokenizer:
    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def check_cap(args, device):
    """One whole R1-Zero GRPO step at the gpu preset (512 rows, 384 new tokens, micro-batches that fit) with
    this process capped at args.gib GiB: what a card of that size would do."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.gib * memory.GiB / total), device)
        torch.cuda.reset_peak_memory_stats(device)
    preset = train_zero.PRESETS["gpu"] if args.model == "gpu" else train_zero.PRESETS["toy"]
    cfg = GRPOConfig(**{k: v for k, v in preset.items() if k in GRPOConfig.__dataclass_fields__})
    policy = make_policy(random_model(args.model, device), cfg, device)
    rows = cfg.prompts_per_step * cfg.group_size
    micro = memory.micro_batch(policy.model, "train", rows, PROMPT + cfg.max_new_tokens)
    g = torch.Generator(device).manual_seed(0)
    reward = lambda replies, items: ([float(len(r) % 3 == 0) for r in replies], {})  # noqa: E731
    step = lambda: grpo_step(policy, StandInTokenizer(), prompts(cfg.prompts_per_step, 1),  # noqa: E731
                             [None] * cfg.prompts_per_step, reward, cfg, step=0, stop_ids=[0], generator=g)
    try:
        with step_guard(f"an R1-Zero step under {args.gib:g} GiB", None):  # as train_zero.py runs it
            seconds, metrics = timed(step, device)
        outcome = {"ok": True, "step_s": round(seconds, 1), "t_gen": metrics["t_gen"], "t_train": metrics["t_train"],
                   "ratio_dev": metrics["ratio_dev"]}
    except (SystemExit, torch.cuda.OutOfMemoryError) as e:  # step_guard's message, or the error itself
        outcome = {"ok": False, "error": str(e)[:300]}
    peak = torch.cuda.max_memory_allocated(device) / memory.GiB if device.type == "cuda" else None
    result("cap", gib=args.gib, rows=rows, micro_batch=micro, peak_gib=peak and round(peak, 2), **outcome)


def check_ddp(args, device):
    """A GRPO update through DDP on one NCCL rank (gloo on the CPU), in micro-batches so that no_sync is
    used: the collectives, the bucketing and the wrapper's forward, on the real backend."""
    import torch.distributed as dist
    from r1mini.distributed import check_replicas_in_sync
    if "RANK" not in os.environ:  # one rank of our own, no torchrun needed
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    model = random_model(args.model, device)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index or 0] if device.type == "cuda"
                                                    else None)
    rows, new = (64, 384) if args.model == "gpu" else (8, 16)
    ro, adv = synthetic_rollout(rows, new, device)
    cfg = GRPOConfig(max_new_tokens=new, micro_batch_size=rows // 4)
    policy = make_policy(model, cfg, device)
    policy.forward = ddp
    keep = torch.ones(rows, dtype=torch.bool, device=device)
    times = [timed(lambda: grpo_update(policy, ro, adv, keep, cfg), device)[0] for _ in range(2)]
    check_replicas_in_sync(model)
    dist.destroy_process_group()
    result("ddp", backend="nccl" if device.type == "cuda" else "gloo", rows=rows, first_update_s=round(times[0], 2),
           update_s=round(times[1], 2))


CHECKS = {"decode": check_decode, "grpo": check_grpo, "float32": check_float32, "cap": check_cap, "ddp": check_ddp}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", choices=list(CHECKS))
    p.add_argument("gib", nargs="?", type=float, default=24.0, help="the cap, for `cap`")
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="gpu", help="model preset (toy: a dry run on the CPU)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(AttributeError):
        torch.set_float32_matmul_precision("highest")  # the scripts' default: float32 is float32
    CHECKS[args.check](args, device)


if __name__ == "__main__":
    main()
