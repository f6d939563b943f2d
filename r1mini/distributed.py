"""Data parallelism under torchrun: joining and leaving the process group, rank-0 printing, the model
wrapped for training (torch.compile and/or DDP), gradient accumulation that all-reduces once over chunks of
rows cut by length (length_chunks), work striped across ranks, metrics summed over ranks, and the check that
every replica holds the same weights.

One process is the default and every helper here is then a no-op or the identity."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import weakref
import zlib

import torch
import torch.distributed as dist


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size). Under torchrun, joins the process group: NCCL on CUDA, gloo on CPU."""
    if "RANK" not in os.environ:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size()


def teardown_distributed(timeout: float = 30.0) -> None:
    """Leave the process group at the end of a torchrun script, so that the process exits cleanly.

    A gloo worker thread drops its references to a finished collective's tensors a moment after the caller
    has woken up, and dropping a tensor that Python also knew needs the GIL. If the interpreter is already
    shutting down by then, the thread is killed mid-cleanup and the process aborts ("terminate called without
    an active exception", SIGABRT) although its work is saved. So: one last collective on a tensor only this
    function holds, then wait, with the GIL released, until the worker has dropped it (its weak reference
    dies), and only then destroy the group. (Earlier collectives are followed by enough Python work that their
    workers have long finished.)"""
    if not dist.is_initialized():
        return
    if dist.get_world_size() > 1:
        last = torch.zeros(1, device=torch.device("cuda") if dist.get_backend() == "nccl" else None)
        dist.all_reduce(last)
        released, deadline = weakref.ref(last), time.time() + timeout
        del last
        while released() is not None and time.time() < deadline:
            time.sleep(0.001)
    dist.destroy_process_group()


def run_script(main) -> None:
    """Run a script's main(). Under torchrun, a rank that fails (an exception, or a SystemExit that says what
    to do, such as running out of memory) prints why with its rank and leaves at once, by os._exit: its
    process group is not destroyed, for destroying it while other ranks wait in a collective can hang
    (ncclCommAbort waits for them), and neither is anything else run at exit. torchrun sees the rank gone
    and stops the others within a second, where they would otherwise wait in their next collective until
    NCCL's watchdog fired (10 minutes)."""
    try:
        main()
    except BaseException as e:  # noqa: BLE001 (every way out of main but a normal one)
        if rank_and_world()[1] == 1 or (isinstance(e, SystemExit) and e.code in (None, 0)):
            raise
        rank = rank_and_world()[0]
        if isinstance(e, SystemExit):
            print(f"[rank {rank}] {e.code}", file=sys.stderr)
        else:
            traceback.print_exc()
            print(f"[rank {rank}] failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130 if isinstance(e, KeyboardInterrupt) else 1)


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def is_main() -> bool:
    return rank_and_world()[0] == 0


def print0(*args, **kwargs) -> None:
    if is_main():
        print(*args, **kwargs, flush=True)


# -- the model, wrapped for training -----------------------------------------------------------------------

def training_forward(model: torch.nn.Module, device: torch.device, compile: bool = False,
                     dynamic: bool | None = None) -> torch.nn.Module:
    """The module a training step runs its forward and backward through: `model` itself, compiled with
    torch.compile (`dynamic`: shapes that vary, like rollouts), and/or wrapped in DDP under torchrun. The
    optimizer, generation, evaluation and saving keep using the plain `model`, which shares the weights.
    (`accumulate` reaches DDP's no_sync through the compiled wrapper, which forwards attribute lookups.)"""
    forward = model
    if rank_and_world()[1] > 1:
        if device.type == "cuda" and device.index is None:
            raise ValueError("DDP on CUDA needs the rank's own GPU, cuda:LOCAL_RANK (pick_device gives it)")
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    # compile outside DDP, as PyTorch advises: the compiler then sees DDP's buckets and splits the graph at
    # them, so that the all-reduce of one bucket overlaps the backward of the next
    return torch.compile(forward, dynamic=dynamic) if compile else forward


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside a DDP wrapper and/or torch.compile."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def accumulate(forward: torch.nn.Module, chunks: list):
    """Gradient accumulation: yields (i, chunk) for each micro-batch, with DDP's all-reduce of the gradients
    held back (no_sync) until the backward of the last one, so the ranks communicate once per update."""
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        with contextlib.nullcontext() if last or not hasattr(forward, "no_sync") else forward.no_sync():
            yield i, chunk


LENGTH_CHUNKS = 4  # a training batch of rows of different lengths goes in this many chunks, each cut short


def length_chunks(needed: torch.Tensor, micro: int = 0) -> list[tuple[torch.Tensor, int]]:
    """Micro-batches for right-padded rows of different lengths, `needed` (rows, T) True at the columns a
    row needs computed (its targets): (row indices, width) pairs, shortest rows first, LENGTH_CHUNKS chunks
    (or chunks of `micro` rows, the most that fit, if smaller), each to be cut to the width of its longest
    row (the column after its last True, at least 1). A causal model's outputs before a row's end do not
    depend on the padding after it, so the cut changes nothing but the work: about half of the tokens of a
    cpu-preset rollout batch are padding, and the GRPO update runs in 0.58 of the time."""
    widths = (needed * torch.arange(1, needed.size(1) + 1, device=needed.device)).amax(1).clamp(min=1)
    order = widths.argsort(stable=True)
    size = max(1, min(micro or len(order), -(-len(order) // LENGTH_CHUNKS)))
    return [(rows, int(widths[rows].max())) for rows in order.split(size)]


# -- work and metrics across ranks ---------------------------------------------------------------------------

def map_striped(fn, items: list) -> list:
    """fn(items) computed data-parallel: rank r takes items r, r + world, ...; the results come back to every
    rank in the original order (fn must return one result per item)."""
    rank, world = rank_and_world()
    if world == 1:
        return fn(items)
    local = fn(items[rank::world])
    gathered = [None] * world
    dist.all_gather_object(gathered, local)
    return [gathered[i % world][i // world] for i in range(len(items))]


def sum_over_ranks(values: list[float], device: torch.device, names: str = "") -> list[float]:
    """Element-wise sums of every rank's values (in float64); the values themselves in one process.

    Every rank must pass as many values, meaning the same things (`names` says what they are, e.g. the
    metrics' keys). Ranks that disagree would all-reduce lists of different lengths: NCCL hangs or sums
    garbage, gloo aborts. So a first, tiny collective compares the number of values and a checksum of
    `names` across ranks, and on a mismatch every rank raises the same error (a bug to report)."""
    if rank_and_world()[1] == 1:
        return [float(v) for v in values]
    shape = torch.tensor([len(values), zlib.crc32(names.encode())], dtype=torch.float64, device=device)
    spread = torch.cat([shape, -shape])
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)  # [max n, max crc, -min n, -min crc]
    if not torch.equal(spread[:2], -spread[2:]):
        raise RuntimeError(f"ranks disagree on what to sum: this rank has {len(values)} values ({names or 'unnamed'}); "
                           f"across ranks {int(-spread[2])} to {int(spread[0])} values, names differ: "
                           f"{bool(spread[1] != -spread[3])}. Every rank must report the same metrics.")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def param_checksum(model: torch.nn.Module) -> torch.Tensor:
    """(sum, sum of squares, position-weighted sum) of every parameter, in float64: equal on all ranks iff
    (barring a freak coincidence) the replicas hold the same weights."""
    rows = []
    for p in unwrap(model).parameters():
        x = p.detach().double().flatten()
        positions = torch.arange(1, len(x) + 1, device=x.device)
        rows.append(torch.stack([x.sum(), (x * x).sum(), (x * positions).sum()]))
    return torch.stack(rows)


def check_replicas_in_sync(model: torch.nn.Module) -> float:
    """After data-parallel training every rank must hold the same weights (DDP averages the gradients, the
    optimizers then take the same step). Gathers every rank's checksum and raises if any differs; returns a
    one-number summary to print. A cheap always-on guard against a rank that skipped a step or a collective."""
    local = param_checksum(model)
    world = rank_and_world()[1]
    if world > 1:
        gathered = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(gathered, local)
        bad = [r for r, g in enumerate(gathered) if not torch.equal(g, gathered[0])]
        if bad:
            worst = max((g - gathered[0]).abs().max().item() for g in gathered)
            raise RuntimeError(f"model replicas diverged: ranks {bad} hold different weights than rank 0 "
                               f"(max checksum difference {worst:.3g})")
    return local.sum().item()


def report_replicas_in_sync(model: torch.nn.Module, what: str = "") -> None:
    """Under torchrun: check_replicas_in_sync, and print its checksum. Nothing to check in one process."""
    world = rank_and_world()[1]
    if world > 1:
        print0(f"{what}replicas in sync: parameter checksum {check_replicas_in_sync(model)!r} on {world} ranks")
