"""The checkpoint directory every stage reads and writes, and what a resume needs.

A checkpoint holds the weights (model.pt), the model config (model.json), the tokenizer, meta.json (stage,
parent, step, done, resolved config, metrics) and, while a run is unfinished, train_state.pt: the optimizer,
the step, the random states and its own copy of the weights, so rerunning the same command goes on exactly
where the last checkpoint left off. Files are written to a temporary name and renamed, meta.json last: a kill
mid-save never leaves a broken or half-new checkpoint (r1mini/files.py). What a user can fix (a missing,
mismatched or damaged checkpoint) raises config.UserError, whose message says what to do."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from r1mini.config import UserError
from r1mini.distributed import is_main, print0, unwrap
from r1mini.files import atomic_save, atomic_write_json
from r1mini.hf import load_pretrained
from r1mini.model import ModelConfig, Transformer
from r1mini.tokenizer import Tokenizer


def save_checkpoint(out: str | Path, model: torch.nn.Module, tokenizer: Tokenizer, meta: dict,
                    train_state: dict | None = None) -> None:
    """Write a checkpoint directory (rank 0 writes; every rank refuses weights that hold NaN). train_state
    (optimizer, step, random states) is what a resume needs; it gets its own copy of the weights, so a kill
    between the two files cannot pair new weights with an old optimizer."""
    out, model = Path(out), unwrap(model)
    # checked on every rank, which hold the same weights, so that all of them stop here together: a refusal on
    # rank 0 alone would leave the others waiting for it in their next collective
    if not all(t.isfinite().all() for t in model.state_dict().values() if t.is_floating_point()):
        raise FloatingPointError(f"not saving step {meta.get('step')} to {out}: the weights hold NaN or inf (the "
                                 f"learning rate is likely too high); the checkpoint already there is the last good "
                                 f"one")
    if not is_main():
        return
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out)
    atomic_write_json(model.cfg.to_dict(), out / "model.json")
    atomic_save(model.state_dict(), out / "model.pt")
    if train_state is not None:
        atomic_save({**train_state, "model": model.state_dict()}, out / "train_state.pt")
    atomic_write_json(meta, out / "meta.json")  # last: a meta.json means the rest is complete


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", expect_stage: str | None = None,
                    made_by: str | None = None, preset: str | None = None) -> tuple[Transformer, Tokenizer, dict]:
    """(model, tokenizer, meta) of a checkpoint directory. expect_stage: the stage meta.json must name (a
    prefix: "r1" takes every R1 stage); made_by: what to run when there is none ("pretrain.py"); preset: the
    run's preset, which the checkpoint's must match (check_preset). "hf:DIR" reads a Hugging Face checkpoint
    directory instead (r1mini/hf.py), which stands for any stage and any preset."""
    if str(path).startswith("hf:"):
        return load_hf(str(path)[3:], device)
    path = Path(path)
    if not (path / "meta.json").exists() or not (path / "model.pt").exists():
        hint = f"run {made_by} first" if made_by else "start from a checkpoint directory that an earlier stage wrote"
        raise UserError(f"no checkpoint at {path}: {hint}")
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    if expect_stage and not str(meta.get("stage", "")).startswith(expect_stage):
        raise UserError(f"{path} holds a {meta.get('stage')!r} checkpoint, expected {expect_stage!r}")
    if preset is not None:
        check_preset(path, preset)
    cfg = ModelConfig.from_dict(json.loads((path / "model.json").read_text(encoding="utf-8")))
    tokenizer = Tokenizer.load(path)
    # a Hugging Face model's embedding often has rows past its tokenizer's last token (Qwen's: 151,936 for 151,665)
    fits = tokenizer.vocab_size <= cfg.vocab_size if tokenizer.hf else tokenizer.vocab_size == cfg.vocab_size
    if not fits:
        raise UserError(f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model expects "
                         f"{cfg.vocab_size}; the files come from different runs")
    model = Transformer(cfg)
    model.load_state_dict(_load(path / "model.pt"))
    return model.to(device), tokenizer, meta


def load_hf(path: str, device: torch.device | str) -> tuple[Transformer, Tokenizer, dict]:
    """load_checkpoint for hf:PATH: the model with its context capped at R1MINI_HF_CONTEXT positions (default
    2048: prompt and reply together). A 128k-token RoPE table, and a static KV cache that long (the CUDA decode
    loop allocates block_size slots per row), would cost memory that R1-Zero's replies never use; raise it for
    long replies (R1-distilled models often write 4,000 tokens and more)."""
    context = int(os.environ.get("R1MINI_HF_CONTEXT", "2048"))
    try:
        model, tokenizer = load_pretrained(path, device, block_size=context)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load hf:{path}: {e}") from None
    return model, tokenizer, {"stage": "hf", "parent": f"hf:{path}", "config": {}}


def check_preset(path: str | Path, preset: str) -> None:
    """Refuse a checkpoint made at another preset than this run's (toy and toy-student count as one, likewise
    cpu and gpu): a cpu R1-Zero would otherwise train on a toy base that happened to be where it starts from."""
    f = Path(path) / "meta.json"
    theirs = json.loads(f.read_text(encoding="utf-8")).get("preset") if f.exists() else None
    if theirs and theirs.split("-")[0] != preset.split("-")[0]:
        raise UserError(f"{path} was made at preset {theirs}, and this run is at preset {preset}: run at preset "
                        f"{theirs}, or start from a checkpoint made at preset {preset} (toy runs live under out/toy/), "
                        f"or delete {path} to start it over")


def is_done(path: str | Path) -> bool:
    """A finished checkpoint: its meta.json says done (a run stopped mid-way has one that does not)."""
    f = Path(path) / "meta.json"
    return f.exists() and json.loads(f.read_text(encoding="utf-8")).get("done", False)


def load_train_state(path: str | Path) -> dict | None:
    """The train_state.pt of an unfinished run in `path`, or None."""
    f = Path(path) / "train_state.pt"
    return _load(f) if f.exists() else None


def resume(state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer, out: str | Path,
           lr: float | None = None) -> int:
    """Load a train_state's weights and optimizer into model and optimizer; returns the step to go on from.
    `lr` replaces the saved learning rate (the command line's, e.g. lowered after a NaN stopped the run)."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:  # the flags now ask for another model than the run in out/ trained
        raise UserError(f"{out} holds a run of another model (its config: {Path(out) / 'model.json'}); to resume it, "
                        f"rerun with that run's settings (its meta.json), or write the new run elsewhere") from None
    optimizer.load_state_dict(state["optimizer"])
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    print0(f"resuming {out} from step {state['step']}")
    return state["step"]


def _load(f: Path):
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or objects weights_only refuses
        raise UserError(f"cannot read {f} ({type(e).__name__}); it is damaged or from another program: "
                        f"delete it and rerun the stage that writes it") from None


# -- random states: seeding a run, and saving and restoring it so that a resume goes on exactly -------------

def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed Python, numpy and torch. Given the run's device, also set torch's deterministic mode: on for the
    CPU, where a training step at two threads otherwise reads memory that torch.empty handed out and nothing
    wrote, so that one run in three of the same command rounded differently (docs/runs/float_rounding.md; the
    mode fills new memory first, at no throughput cost measured by bench_train and bench_generate); off on a
    GPU, where cuBLAS would need CUBLAS_WORKSPACE_CONFIG and some kernels have no deterministic version."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device is not None:
        torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)


def save_rngs(problem_rng: random.Random | None = None, sampler: torch.Generator | None = None) -> dict:
    """The global RNGs (Python, numpy, torch) and, when given, a run's problem RNG and its sampler's
    generator, in plain types and tensors so that torch.load(weights_only=True) reads them back."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"rng": {"python": random.getstate(), "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
                     "torch": torch.get_rng_state()}}
    if problem_rng is not None:
        state["problem_rng"] = problem_rng.getstate()
    if sampler is not None:
        state["sampler"] = sampler.get_state()
    return state


def restore_rngs(state: dict, problem_rng: random.Random | None = None,
                 sampler: torch.Generator | None = None) -> None:
    """Undo save_rngs: the global RNGs, and the problem RNG and sampler when given."""
    rng = state["rng"]
    random.setstate(rng["python"])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if problem_rng is not None:
        problem_rng.setstate(state["problem_rng"])
    if sampler is not None:
        sampler.set_state(state["sampler"])
