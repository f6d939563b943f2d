"""Which device a run uses, how it computes there (bf16 autocast on CUDA), and what it achieved (TFLOP/s,
MFU against the device's peak, peak memory).

`cuda_paths(device)` is the one place that decides whether a run takes the CUDA branches (bf16 autocast, a
bf16 KV cache). Setting R1MINI_EMULATE_CUDA=1 makes it say yes on the CPU too, so that the tests, and CI,
run every CUDA branch without a GPU: a bug a GPU would hit fails on the CPU first (slowly: CPU bf16 is
emulated). It is read at every call, so a test can set it for one block of code."""
from __future__ import annotations

import contextlib
import functools
import os
import resource
import sys

import torch

from r1mini.config import ConfigError


def pick_device(requested: str | None = None) -> torch.device:
    """cuda > mps > cpu, unless `requested` (a script's --device) says otherwise. Under torchrun each rank
    takes the GPU of its LOCAL_RANK: "cuda" means cuda:LOCAL_RANK there, and a fixed index ("cuda:0") would
    put every rank on one GPU, so it is refused unless it is that rank's own."""
    local_rank, world = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if requested:
        device = torch.device(requested)
        if device.type != "cuda":
            return device
        if not torch.cuda.is_available():
            raise ConfigError("device", f"{requested} requested but CUDA is not available; use cpu")
        if device.index is None:
            return torch.device("cuda", local_rank)
        if world > 1 and device.index != local_rank:
            raise ConfigError("device", f"{requested} under torchrun would put all {world} ranks on one GPU; ask for "
                                        f"cuda and each rank takes the GPU of its LOCAL_RANK")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        if _mps_works():
            return torch.device("mps")
    return torch.device("cpu")


def _mps_works() -> bool:
    """Apple silicon: a tiny forward and backward through the ops the model uses; some torch builds lack
    one of them on mps, and a clear fallback beats a crash mid-run."""
    try:
        x = torch.randn(2, 2, 8, 4, device="mps", requires_grad=True)
        y = torch.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True)
        sampled = torch.multinomial(torch.softmax(y[0, 0], -1), 1).sum() * 0
        (torch.nn.functional.silu(y).pow(2).mean() + sampled).backward()
        return True
    except Exception as e:  # noqa: BLE001 (any failure means: do not use mps)
        print(f"mps is available but failed a smoke test ({type(e).__name__}: {e}); falling back to cpu "
              f"(pass --device mps to force it)", flush=True)
        return False


EMULATE_CUDA = "R1MINI_EMULATE_CUDA"


def cuda_paths(device: torch.device) -> bool:
    """Whether computation on `device` takes the CUDA branches: on CUDA, and on the CPU when the environment
    variable R1MINI_EMULATE_CUDA is 1 (tests)."""
    device = torch.device(device)
    return device.type == "cuda" or (device.type == "cpu" and os.environ.get(EMULATE_CUDA) == "1")


def uses_bf16(device: torch.device) -> bool:
    """bf16 autocast and a bf16 cache: on the CUDA paths, except on GPUs older than Ampere (compute
    capability 8.0), which have no bf16 tensor cores; they run in float32, with a word about it."""
    device = torch.device(device)
    return cuda_paths(device) and (device.type != "cuda" or _gpu_has_bf16(device.index or 0))


@functools.cache
def _gpu_has_bf16(index: int) -> bool:
    """Asked once per GPU: autocast asks on every forward, and a decode step is a few milliseconds."""
    if torch.cuda.get_device_capability(index) >= (8, 0):
        return True
    print(f"note: {torch.cuda.get_device_name(index)} has no bf16 (compute capability < 8.0): running in "
          f"float32, slower and with twice the memory", flush=True)
    return False


def default_preset(device: str | None = None) -> str:
    """The preset a script runs when --preset is not given: gpu on a CUDA GPU with bf16 (Ampere or newer), cpu
    elsewhere. A GPU without bf16 (a T4, a V100) runs everything in float32 on its CUDA cores, several times
    below its float16 tensor cores: the gpu preset's speedrun would take most of a day there, against an
    hour on an H100, so it gets the cpu preset's small model (ask for --preset gpu to run it anyway)."""
    if not torch.cuda.is_available() or (device is not None and torch.device(device).type != "cuda"):
        return "cpu"
    index = torch.device(device).index if device else None
    if _gpu_has_bf16(index or int(os.environ.get("LOCAL_RANK", 0))):
        return "gpu"
    print("note: the cpu preset by default on a GPU without bf16; --preset gpu runs the large one in float32, "
          "for many hours", flush=True)
    return "cpu"


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere (CPU bf16 matmuls are slower, not faster)."""
    if uses_bf16(device):
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cache_dtype(device: torch.device, param_dtype: torch.dtype = torch.float32) -> torch.dtype:
    """The KV cache's dtype: bf16 on the CUDA paths (half the memory, and what the autocast forward writes),
    the weights' own dtype elsewhere."""
    return torch.bfloat16 if uses_bf16(device) else param_dtype



# dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for MFU; the first name that the
# device's name contains wins, so the PCIe and NVL H100s (fewer SMs, lower clocks) come before the SXM's
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H200": 989e12, "H100": 989e12, "A100": 312e12,
                   "L40S": 362e12, "A10G": 125e12, "4090": 165e12}


def peak_flops(device: torch.device) -> float | None:
    """The device's bf16 peak, when we know it (CUDA only); None elsewhere."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated tensors on CUDA, the process's resident set size elsewhere."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2 ** 20 if sys.platform == "darwin" else rss / 2 ** 10  # bytes on macOS, KiB on Linux


def throughput(tokens_per_s: float, flops_per_token: float, device: torch.device, world: int = 1) -> dict:
    """Achieved TFLOP/s (all ranks), MFU against the devices' peak when known, and this rank's peak memory."""
    flops = tokens_per_s * flops_per_token
    row = {"tflops": round(flops / 1e12, 4)}
    peak = peak_flops(device)
    if peak:
        row["mfu"] = round(flops / (peak * world), 4)
    row["peak_mem_mb"] = round(peak_memory_mb(device), 1)
    return row
