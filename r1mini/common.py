"""Plumbing every stage shares: device and dtype, torchrun/DDP, seeding, config from the command line,
logging, and the checkpoint directory (weights + model config + tokenizer + meta.json + logs)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np
import torch

from r1mini.model import PRESETS as MODEL_PRESETS, ModelConfig, Transformer
from r1mini.tasks import SUITES
from r1mini.tokenizer import Tokenizer

# which script writes which stage's checkpoint, for error messages
STAGE_SCRIPTS = {"base": "pretrain.py", "zero": "train_zero.py", "r1": "train_r1.py", "student": "distill.py"}


# -- device, distributed, seeding ----------------------------------------------------------------------

def pick_device(requested: str | None = None) -> torch.device:
    """cuda > mps > cpu, unless --device says otherwise."""
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit("--device cuda requested but CUDA is not available; use --device cpu")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
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
        (torch.nn.functional.silu(y).pow(2).mean() + torch.multinomial(torch.softmax(y[0, 0], -1), 1).sum() * 0).backward()
        return True
    except Exception as e:  # noqa: BLE001 (any failure means: do not use mps)
        print(f"mps is available but failed a smoke test ({type(e).__name__}: {e}); falling back to cpu "
              f"(pass --device mps to force it)", flush=True)
        return False


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision elsewhere (CPU bf16 matmuls are slower, not faster)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for MFU
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "4090": 165e12}


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


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size). Under torchrun, joins the process group: NCCL on CUDA, gloo on CPU."""
    if "RANK" not in os.environ:
        return 0, 1
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def teardown_distributed(timeout: float = 30.0) -> None:
    """Leave the process group at the end of a torchrun script, so that the process exits cleanly.

    A gloo worker thread drops its references to a finished collective's tensors a moment after the caller
    has woken up, and dropping a tensor that Python also knew needs the GIL. If the interpreter is already
    shutting down by then, the thread is killed mid-cleanup and the process aborts ("terminate called without
    an active exception", SIGABRT) although its work is saved. So: one last collective on a tensor only this
    function holds, then wait, with the GIL released, until the worker has dropped it (its weak reference
    dies), and only then destroy the group. (Earlier collectives are followed by enough Python work that their
    workers have long finished.)"""
    if not torch.distributed.is_initialized():
        return
    if torch.distributed.get_world_size() > 1:
        last = torch.zeros(1, device=torch.device("cuda") if torch.distributed.get_backend() == "nccl" else None)
        torch.distributed.all_reduce(last)
        released, deadline = weakref.ref(last), time.time() + timeout
        del last
        while released() is not None and time.time() < deadline:
            time.sleep(0.001)
    torch.distributed.destroy_process_group()


def is_main() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def print0(*args, **kwargs) -> None:
    if is_main():
        print(*args, **kwargs, flush=True)


def param_checksum(model: torch.nn.Module) -> torch.Tensor:
    """(sum, sum of squares, position-weighted sum) of every parameter, in float64: equal on all ranks iff
    (barring a freak coincidence) the replicas hold the same weights."""
    rows = []
    for p in unwrap(model).parameters():
        x = p.detach().double().flatten()
        rows.append(torch.stack([x.sum(), (x * x).sum(), (x * torch.arange(1, len(x) + 1, device=x.device)).sum()]))
    return torch.stack(rows)


def check_replicas_in_sync(model: torch.nn.Module) -> float:
    """After data-parallel training every rank must hold the same weights (DDP averages the gradients, the
    optimizers then take the same step). Gathers every rank's checksum and raises if any differs; returns a
    one-number summary to print. A cheap always-on guard against a rank that skipped a step or a collective."""
    local = param_checksum(model)
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        gathered = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(gathered, local)
        bad = [r for r, g in enumerate(gathered) if not torch.equal(g, gathered[0])]
        if bad:
            raise RuntimeError(f"model replicas diverged: ranks {bad} hold different weights than rank 0 "
                               f"(max checksum difference {max((g - gathered[0]).abs().max().item() for g in gathered):.3g})")
    return local.sum().item()


def map_striped(fn, items: list) -> list:
    """fn(items) computed data-parallel: rank r takes items r, r + world, ...; the results come back to every
    rank in the original order (fn must return one result per item)."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return fn(items)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    local = fn(items[rank::world])
    gathered = [None] * world
    torch.distributed.all_gather_object(gathered, local)
    return [gathered[i % world][i // world] for i in range(len(items))]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict:
    """Every global RNG, in plain types so torch.load(weights_only=True) can read them back."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
            "torch": torch.get_rng_state()}


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])


def random_states(problem_rng: random.Random, sampler: torch.Generator) -> dict:
    """Everything a run that draws problems and samples completions needs to go on exactly: its problem RNG,
    its sampler's generator, and the global RNGs (plain types and tensors, for weights_only loading)."""
    return {"problem_rng": problem_rng.getstate(), "sampler": sampler.get_state(), "rng": rng_states()}


def set_random_states(state: dict, problem_rng: random.Random, sampler: torch.Generator) -> None:
    problem_rng.setstate(state["problem_rng"])
    sampler.set_state(state["sampler"])
    set_rng_states(state["rng"])


# -- configuration --------------------------------------------------------------------------------------

def parse_config(config_cls, presets: dict[str, dict], doc: str, argv: list[str] | None = None,
                 default_init: str | None = None, default_out: str = "out/run"):
    """Command line -> (config, args). Shared flags: --preset --out --init --device --seed; and --key value
    for every field of the stage's dataclass config, whose defaults come from the chosen preset."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=None)
    pre.add_argument("--device", default=None)
    known, _ = pre.parse_known_args(argv)
    preset = known.preset or ("gpu" if torch.cuda.is_available() and known.device != "cpu" else "cpu")
    if preset not in presets:
        raise SystemExit(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    defaults = config_cls(**presets[preset])

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("run")
    g.add_argument("--preset", default=preset, choices=list(presets),
                   help="size of everything (default: gpu when CUDA is available, else cpu)")
    g.add_argument("--out", default=default_out, help="checkpoint directory to write")
    if default_init is not None:
        g.add_argument("--init", default=default_init, help="checkpoint directory to start from")
    g.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    g.add_argument("--seed", type=int, default=1337)
    g = parser.add_argument_group(f"{config_cls.__name__} (defaults of preset {preset!r})")
    for f in dataclasses.fields(config_cls):
        value = getattr(defaults, f.name)
        kind = type(value)
        if kind is bool:
            g.add_argument(f"--{f.name}", type=_parse_bool, default=value, metavar="BOOL", help=f"default {value}")
        else:
            g.add_argument(f"--{f.name}", type=kind, default=value, help=f"default {value}")
    args = parser.parse_args(argv)
    config = config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})
    check_config(config)
    return config, args


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


# -- logging --------------------------------------------------------------------------------------------

class JsonlLogger:
    """Appends one JSON object per line to out/log.jsonl (rank 0 only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.start = time.time()

    def log(self, row: dict) -> None:
        if is_main():
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({**row, "time": round(time.time() - self.start, 2)}, ensure_ascii=False) + "\n")

    def drop_after(self, step: int, **match) -> None:
        """On resume: forget the rows logged after the checkpoint's step, since those steps run again (only the
        rows whose fields equal `match`, e.g. stage="final_rl", when several loops share the log)."""
        if not is_main() or not self.path.exists():
            return

        def keep(line: str) -> bool:
            try:
                row = json.loads(line)
            except ValueError:  # a line cut short when the run was killed
                return False
            return row.get("step", -1) <= step or any(row.get(k) != v for k, v in match.items())
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        self.path.write_text("".join(line for line in lines if line.strip() and keep(line)), encoding="utf-8")


# -- checkpoints ----------------------------------------------------------------------------------------

def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a kill mid-save never leaves a broken file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_json(obj, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def unwrap(model: torch.nn.Module) -> Transformer:
    """The plain Transformer inside a DDP wrapper and/or torch.compile."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def optimizer_step(model: torch.nn.Module, optimizer, loss: torch.Tensor, grad_clip: float,
                   moe_model: Transformer | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One update from one loss: zero the gradients, backward, then apply_update."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return apply_update(model, optimizer, loss.detach(), grad_clip, moe_model)


def apply_update(model: torch.nn.Module, optimizer, loss: torch.Tensor, grad_clip: float,
                 moe_model: Transformer | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """With the gradients in place (one backward or several accumulated): clip their norm, refuse a NaN or
    inf loss or gradient (FloatingPointError, raised before the update), step, then nudge every DeepSeekMoE
    routing bias (aux-loss-free balancing runs once per optimizer step). Returns the gradient norm and the
    expert loads."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    # checked after backward, where DDP has all-reduced the gradients, so every rank stops together
    if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
        raise FloatingPointError(f"loss is {loss.item():.4g}, gradient norm {grad_norm.item():.4g}")
    optimizer.step()
    return grad_norm, [moe.update_bias() for moe in (unwrap(model) if moe_model is None else moe_model).moe_layers()]


def save_checkpoint(out: str | Path, model: torch.nn.Module, tokenizer: Tokenizer, meta: dict,
                    train_state: dict | None = None) -> None:
    """Write a checkpoint directory. train_state (optimizer, step, RNG) is what a resume needs; it gets its own
    copy of the weights, so a kill between the two files cannot pair new weights with an old optimizer."""
    if not is_main():
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = unwrap(model)
    if not all(t.isfinite().all() for t in model.state_dict().values() if t.is_floating_point()):
        raise SystemExit(f"not saving step {meta.get('step')} to {out}: the weights hold NaN or inf (the learning "
                         f"rate is likely too high); the checkpoint already there is the last good one")
    tokenizer.save(out)
    atomic_write_json(model.cfg.to_dict(), out / "model.json")
    atomic_save(model.state_dict(), out / "model.pt")
    if train_state is not None:
        atomic_save({**train_state, "model": model.state_dict()}, out / "train_state.pt")
    atomic_write_json(meta, out / "meta.json")  # last: a meta.json means the rest is complete


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", expect_stage: str | None = None):
    """(model, tokenizer, meta) of a checkpoint directory, with errors that say which script makes it."""
    path = Path(path)
    if not (path / "meta.json").exists() or not (path / "model.pt").exists():
        if expect_stage in STAGE_SCRIPTS:
            hint = f"run {STAGE_SCRIPTS[expect_stage]} first"
        elif expect_stage and expect_stage.startswith("r1/"):
            hint = f"run train_r1.py --stage {expect_stage[3:]} first"
        else:
            hint = "pass --init with a checkpoint directory written by an earlier stage"
        raise SystemExit(f"no checkpoint at {path}: {hint}")
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    if expect_stage and not str(meta.get("stage", "")).startswith(expect_stage):
        raise SystemExit(f"{path} holds a {meta.get('stage')!r} checkpoint, expected {expect_stage!r}")
    cfg = ModelConfig.from_dict(json.loads((path / "model.json").read_text(encoding="utf-8")))
    tokenizer = Tokenizer.load(path)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise SystemExit(f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model expects "
                         f"{cfg.vocab_size}; the files come from different runs")
    model = Transformer(cfg)
    model.load_state_dict(_load(path / "model.pt"))
    return model.to(device), tokenizer, meta


def load_train_state(path: str | Path) -> dict | None:
    f = Path(path) / "train_state.pt"
    return _load(f) if f.exists() else None


def _load(f: Path):
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or objects weights_only refuses
        raise SystemExit(f"cannot read {f} ({type(e).__name__}); it is damaged or from another program: "
                         f"delete it and rerun the stage that writes it") from None


# -- failing clearly ------------------------------------------------------------------------------------
# What a flag must be, by field name, shared by every stage's config. A field not named here: an int must
# be > 0, a float >= 0; every float must be finite.
_POSITIVE = (lambda v: v > 0, "> 0")
_NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
_SHARE = (lambda v: 0 <= v <= 1, "in [0, 1]")


def _one_of(*options):
    return (lambda v: v in options, "one of " + ", ".join(map(repr, options)))


FLAG_RULES = {
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "zh_share": _SHARE, "general_share": _SHARE, "min_lr_ratio": _SHARE,
    "lr": _POSITIVE, "sft_lr": _POSITIVE, "rl_lr": _POSITIVE, "rm_lr": _POSITIVE, "grad_clip": _POSITIVE,
    "reasoning_ratio": _POSITIVE,
    # counts where 0 means "none"
    "n_routed_experts": _NON_NEGATIVE, "warmup_steps": _NON_NEGATIVE, "log_samples": _NON_NEGATIVE,
    "show": _NON_NEGATIVE, "rl_steps": _NON_NEGATIVE, "final_steps": _NON_NEGATIVE,
    "micro_batch_size": _NON_NEGATIVE, "sft_micro_batch_size": _NON_NEGATIVE, "rl_micro_batch_size": _NON_NEGATIVE,
    "agg": _one_of("seq-mean", "token-mean", "constant"), "scale": _one_of("std", "none"),
    "chat": _one_of("auto", "yes", "no"),
    "langs": (lambda v: set(v.split(",")) <= {"en", "zh"}, "a comma-separated list of en, zh"),
}


def check_config(config) -> None:
    """SystemExit naming the flag, for a value no run can use (FLAG_RULES), an unknown task suite or model."""
    rules = {**FLAG_RULES, "suite": (lambda v: v == "" or v in SUITES, "one of " + ", ".join(SUITES)),
             "model": (lambda v: v in MODEL_PRESETS, "one of " + ", ".join(MODEL_PRESETS))}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if type(value) is float and not math.isfinite(value):
            raise SystemExit(f"--{f.name} must be a finite number, got {value}")
        rule = rules.get(f.name) or {int: _POSITIVE, float: _NON_NEGATIVE}.get(type(value))
        if rule is not None and not rule[0](value):
            raise SystemExit(f"--{f.name} must be {rule[1]}, got {value!r}")


@contextlib.contextmanager
def step_guard(where: str, out: str | Path | None, lr_flag: str = "--lr", memory_flags: str = "--batch_size"):
    """Turn the failures a user can fix into a SystemExit that says what to do: a NaN/inf loss or gradient
    (FloatingPointError from apply_update, raised before the update) and CUDA running out of memory.
    Either way nothing was saved after the last checkpoint in `out`, so a rerun resumes from it."""
    resume = f" The last checkpoint in {out} is intact; rerun the same command to resume from it." if out else ""
    try:
        yield
    except FloatingPointError as e:
        raise SystemExit(f"{e} at {where}; stopped before applying the update. Lower {lr_flag} or --grad_clip."
                         + resume) from None
    except torch.cuda.OutOfMemoryError:
        raise SystemExit(f"CUDA out of memory at {where}: lower {memory_flags}, or use a smaller --preset." + resume) from None
