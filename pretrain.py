"""Pretrain the tiny base model that every later stage starts from (the stand-in for DeepSeek-V3-Base).

1. Generate the synthetic corpus (r1mini/corpus.py): task documents in every solution style, conversations
   in the R1-Zero template of mixed quality, facts and small talk. Problems come from the training split;
   the validation stream uses dev-split problems only (held out from training; the test split is eval.py's).
2. Train our byte-level BPE on a sample of it (digits always single tokens).
3. Train the transformer on random windows of the packed token stream: AdamW, linear warmup then cosine
   decay (or warmup-stable-decay), gradient clipping, bf16 autocast on CUDA. For DeepSeekMoE models, the
   routing bias is nudged after every optimizer step (auxiliary-loss-free balancing) and expert load is logged.
   The checkpoint holds an exponential moving average of the weights (--ema; DeepSeek-V3 §3.2.3 kept one too):
   the trained weights wander between styles of answer from one hundred steps to the next, the average does not.
   --curve_every logs the learning curve that matters downstream: dev-split pass@1 under the R1-Zero template.

Writes out/base: model.pt, model.json, tokenizer.tiktoken/json, meta.json, log.jsonl, train_state.pt
(optimizer and RNG states: rerun the same command after an interruption and it resumes).

    python pretrain.py                      # cpu preset on CPU, gpu preset when CUDA is there
    python pretrain.py --preset toy         # seconds: a smoke test, into out/toy/base
    python pretrain.py --preset cpu-student --out out/student_base  # a smaller base, for distill.py
    python pretrain.py --max_steps 2000 --lr 2e-3
    torchrun --nproc_per_node=2 pretrain.py # data parallel
    python pretrain.py --preset gpu --compile true --grad_accum 2   # the same global batch in 2 micro-batches
    python pretrain.py --attn mla --mtp_depth 1   # DeepSeek-V3's latent attention and multi-token prediction
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from r1mini.checkpoint import (check_preset, load_train_state, restore_rngs, resume, save_checkpoint, save_rngs,
                               seed_everything)
from r1mini.config import NON_NEGATIVE, POSITIVE, SHARE, name_in, one_of, parse_config, validate
from r1mini.corpus import corpus_documents, pack, random_windows
from r1mini.device import autocast, cuda_paths, pick_device, throughput
from r1mini.distributed import (accumulate, print0, report_replicas_in_sync, run_script, setup_distributed,
                                teardown_distributed, training_forward)
from r1mini.evaluate import heldout_eval, heldout_problems
from r1mini.jsonl import JsonlLogger
from r1mini.memory import micro_batch
from r1mini.model import PRESETS as MODEL_PRESETS, Transformer, model_config
from r1mini.optim import apply_update, learning_rate
from r1mini.stage import exits_with_message, stage_meta, step_guard
from r1mini.tasks import SUITES, suite
from r1mini.tokenizer import Tokenizer


@dataclass
class PretrainConfig:
    # model and data
    model: str = "cpu"  # model preset (r1mini/model.py PRESETS)
    suite: str = "cpu"  # task suite (r1mini/tasks.py SUITES)
    n_routed_experts: int = 0  # > 0: DeepSeekMoE feed-forward with this many routed experts
    n_layer: int = 0  # > 0: this many transformer blocks instead of the model preset's
    n_embd: int = 0  # > 0: this width instead of the model preset's (a multiple of the preset's head count)
    vocab_size: int = 768  # BPE ranks; the special tokens come on top
    tokenizer_docs: int = 20_000  # corpus documents the tokenizer is trained on
    train_docs: int = 80_000  # corpus documents to pretrain on (tasks' worked solutions, chats, the world's facts)
    val_docs: int = 2_000  # documents of dev-split problems, for the validation loss
    # optimisation
    batch_size: int = 24  # sequences per step (all ranks together): 24 x 256 tokens at the cpu preset
    grad_accum: int = 0  # micro-batches per rank and step; 0: the fewest that fit the device (1 on the CPU)
    # the cpu preset's schedule lets the slowest of three seeds reach the plateau of step-by-step accuracy (cosine
    # at 3e-3 over 1200 steps left one seed ~300 steps late: docs/runs/pretrain_curves.md)
    max_steps: int = 1400  # optimizer steps
    lr: float = 4.5e-3  # peak learning rate (AdamW), after the warm-up
    min_lr_ratio: float = 0.1  # the cosine decay ends at lr times this
    warmup_steps: int = 50  # steps of linear warm-up from 0 to lr
    decay_steps: int = 300  # > 0: warmup-stable-decay, lr held until the last decay_steps; 0: cosine after warm-up
    ema: float = 0.99  # > 0: the checkpoint holds an exponential moving average of the weights (this decay a step)
    weight_decay: float = 0.1  # AdamW's, on weight matrices only
    grad_clip: float = 1.0  # the gradient's global norm is clipped to this
    compile: bool = False  # torch.compile the model for training (GPU: faster after a minute of compiling)
    # bookkeeping
    eval_every: int = 100  # steps between validation losses
    eval_batches: int = 8  # batches of validation text per validation loss
    ckpt_every: int = 100  # steps between checkpoints to resume from
    log_every: int = 10  # steps between rows of log.jsonl
    curve_every: int = 0  # steps between dev-split pass@1 checks under the R1-Zero template (0: none)
    curve_problems: int = 50  # dev problems per task in each check (English prompts)
    curve_k: int = 4  # samples per problem, at temperature 0.6 and top-p 0.95
    curve_max_new_tokens: int = 224  # the reply budget of the check (R1-Zero's at the cpu preset)
    # DeepSeek-V3 architecture options
    attn: str = "gqa"  # "mla": multi-head latent attention (its sizes: r1mini/model.py ModelConfig)
    mtp_depth: int = 0  # D >= 1: that many multi-token-prediction modules, trained beside the model
    mtp_lambda: float = 0.3  # lambda, the weight of the MTP loss (DeepSeek-V3 used 0.3, then 0.1)

    RULES: ClassVar[dict] = {"model": name_in(MODEL_PRESETS), "suite": name_in(SUITES, allow_import=True),
                             "lr": POSITIVE, "grad_clip": POSITIVE, "min_lr_ratio": SHARE,
                             "n_routed_experts": NON_NEGATIVE, "warmup_steps": NON_NEGATIVE,
                             "grad_accum": NON_NEGATIVE, "attn": one_of("gqa", "mla"), "mtp_depth": NON_NEGATIVE,
                             "curve_every": NON_NEGATIVE, "decay_steps": NON_NEGATIVE, "n_layer": NON_NEGATIVE,
                             "n_embd": NON_NEGATIVE, "ema": (lambda v: 0 <= v < 1, "in [0, 1)")}

    def __post_init__(self):
        validate(self)


PRESETS = {
    "toy": dict(model="toy", suite="toy", vocab_size=300, tokenizer_docs=1_000, train_docs=2_000, val_docs=200,
                batch_size=8, max_steps=30, warmup_steps=5, decay_steps=0, eval_every=15, eval_batches=2,
                ckpt_every=15, log_every=5),
    "cpu": dict(),
    "gpu": dict(model="gpu", suite="gpu", vocab_size=2048, tokenizer_docs=50_000, train_docs=1_500_000,
                val_docs=10_000, batch_size=128, max_steps=6_000, lr=1e-3, warmup_steps=200, decay_steps=0,
                eval_every=500, eval_batches=20, ckpt_every=1000, log_every=50),
}
# the students of distillation: the same data and schedule, a smaller model
PRESETS.update({f"{name}-student": {**PRESETS[name], "model": f"{name}-student"} for name in ("toy", "cpu", "gpu")})


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to lr, then cosine decay to lr * min_lr_ratio: over every step after the warm-up, or with
    decay_steps over the last decay_steps only, lr held until then (warmup-stable-decay; optim.learning_rate). A
    run of fewer than warmup_steps + decay_steps steps decays from the warm-up's end, as the cosine does."""
    decay_from = max(cfg.warmup_steps, cfg.max_steps - cfg.decay_steps) if cfg.decay_steps else None
    return learning_rate(step, cfg.max_steps, warmup=cfg.warmup_steps, peak=cfg.lr, decay_from=decay_from,
                         min_ratio=cfg.min_lr_ratio)


@exits_with_message
def main(argv=None):
    cfg, args = parse_config(PretrainConfig, PRESETS, __doc__, argv, default_out="out/base")
    device = pick_device(args.device)
    rank, world = setup_distributed(device)
    seed_everything(args.seed, device)
    out = Path(args.out)
    if cfg.batch_size % (world * max(1, cfg.grad_accum)):
        raise SystemExit(f"--batch_size {cfg.batch_size} must divide by {world} ranks x --grad_accum {cfg.grad_accum}")
    check_preset(out, args.preset)  # a run of another preset in --out is not resumed
    state = load_train_state(out)  # an interrupted run to resume
    tokenizer, train_stream, val_stream = prepare_data(cfg, args.seed, out if state is not None else None)

    # -- model and optimizer ------------------------------------------------------------------------------
    shape = {k: v for k, v in (("n_layer", cfg.n_layer), ("n_embd", cfg.n_embd)) if v}
    mcfg = model_config(cfg.model, vocab_size=tokenizer.vocab_size, n_routed_experts=cfg.n_routed_experts,
                        attn=cfg.attn, mtp_depth=cfg.mtp_depth, **shape)
    model = Transformer(mcfg).to(device)
    averaged = Transformer(mcfg).to(device).requires_grad_(False) if cfg.ema else model  # what is evaluated, saved
    if cfg.grad_accum == 0:  # as few micro-batches as fit, each an equal share of this rank's slice
        cfg = dataclasses.replace(cfg, grad_accum=fewest_micro_batches(model, cfg.batch_size // world))
    optimizer = make_optimizer(model, cfg, device)
    # every rank draws the same global batch and trains on its own slice: the run is the same whatever
    # the number of ranks (DDP averages the slices' gradients into the global batch's)
    data_gen = torch.Generator().manual_seed(args.seed)
    step = start_from(state, model, averaged, optimizer, data_gen, out, cfg)
    forward = training_forward(model, device, compile=cfg.compile)  # eval and saving use model
    print0(f"model: {model.num_params():,} parameters ({cfg.model}), device {device}, world {world}")
    logger = JsonlLogger(out / "log.jsonl")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        logger.drop_after(step if state is not None else -1)  # rows after the checkpoint would appear twice

    # -- training loop ------------------------------------------------------------------------------------
    model.train()
    metrics: dict = {}
    local_batch = cfg.batch_size // world
    bar = tqdm(total=cfg.max_steps, initial=step, disable=rank != 0, desc="pretrain", dynamic_ncols=True)
    t_last, tokens_since = time.time(), 0
    while step < cfg.max_steps:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = random_windows(train_stream, cfg.batch_size, mcfg.block_size, data_gen)
        x, y = x[rank * local_batch:(rank + 1) * local_batch], y[rank * local_batch:(rank + 1) * local_batch]
        with step_guard(f"step {step + 1}", out, f"--lr (now {cfg.lr})", "--batch_size (or raise --grad_accum)"):
            loss, grad_norm, loads = train_step(model, forward, optimizer, x, y, cfg, device)
        if cfg.ema:
            update_average(averaged, model, min(cfg.ema, (1 + step) / (10 + step)))
        step += 1
        tokens_since += cfg.batch_size * mcfg.block_size
        bar.update(1)

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            if world > 1:
                torch.distributed.all_reduce(loss, op=torch.distributed.ReduceOp.AVG)
            dt = time.time() - t_last
            metrics = {"step": step, "loss": round(loss.item(), 4), "lr": float(f"{lr:.4g}"),
                       "grad_norm": round(grad_norm.item(), 3),
                       "tokens_per_s": round(tokens_since / dt),
                       **throughput(tokens_since / dt, model.flops_per_token(), device, world)}
            if loads:
                metrics["expert_load_max"] = round(max(load.max().item() for load in loads), 3)
            metrics.update(checks(averaged, step, tokenizer, val_stream, cfg, device))
            logger.log(metrics)
            bar.set_postfix(loss=metrics["loss"], tok_s=metrics["tokens_per_s"])
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            meta = stage_meta("base", args, cfg, parent=None, step=step, done=step == cfg.max_steps, metrics=metrics,
                              model=mcfg.to_dict())
            trained = {"trained_model": model.state_dict()} if cfg.ema else {}
            save_checkpoint(out, averaged, tokenizer, meta, {"optimizer": optimizer.state_dict(), "step": step,
                                                             "data_generator": data_gen.get_state(), **trained,
                                                             **save_rngs()})
        if step % cfg.log_every == 0:  # tokens/s counts training alone, not the checks and the saving above
            t_last, tokens_since = time.time(), 0
    bar.close()
    report_replicas_in_sync(model)
    print0(f"done: step {step}: " + " ".join(f"{k}={v}" for k, v in metrics.items() if k != "step") + f"; wrote {out}")
    teardown_distributed()


def start_from(state: dict | None, model, averaged, optimizer, data_gen, out: Path, cfg: PretrainConfig) -> int:
    """The step to start from: 0, or an interrupted run's, with its weights, optimizer, data order and random
    states restored (the learning rate is set every step from the schedule). With a moving average, the
    checkpoint's weights are the average and the trained ones are kept beside it."""
    if state is None:
        if cfg.ema:
            averaged.load_state_dict(model.state_dict())
        return 0
    step = resume(state, model, optimizer, out)
    if cfg.ema:
        averaged.load_state_dict(state["model"])
        model.load_state_dict(state["trained_model"])
    data_gen.set_state(state["data_generator"])
    restore_rngs(state)
    return step


def checks(model, step: int, tokenizer, val_stream, cfg: PretrainConfig, device) -> dict:
    """The checks due at this step: the validation loss (and the MTP heads'), every eval_every steps; the dev
    learning curve, every curve_every; both at the last step."""
    out: dict = {}
    last = step == cfg.max_steps
    if step % cfg.eval_every == 0 or last:
        out["val_loss"] = round(eval_loss(model, val_stream, cfg, device), 4)
        if cfg.mtp_depth:
            out["val_mtp_loss"] = round(eval_loss(model, val_stream, cfg, device, mtp=True), 4)
    if cfg.curve_every and (step % cfg.curve_every == 0 or last):
        out.update(dev_curve(model, tokenizer, cfg))
    return out


def prepare_data(cfg: PretrainConfig, seed: int, resume_from: Path | None):
    """The corpus (training problems only in the training stream, dev-split ones in the validation stream),
    the tokenizer (trained on it, or the interrupted run's when resuming), and both streams packed."""
    t0 = time.time()
    tasks = suite(cfg.suite)
    train_text = corpus_documents(tasks, cfg.train_docs, seed=seed, split="train")
    val_text = corpus_documents(tasks, cfg.val_docs, seed=seed + 1, split="dev")
    if resume_from is not None:
        tokenizer = Tokenizer.load(resume_from)
    else:
        tokenizer = Tokenizer.train(train_text[:cfg.tokenizer_docs], cfg.vocab_size)
    train_stream = pack(tokenizer.encode_batch(train_text), tokenizer.eot_id)
    val_stream = pack(tokenizer.encode_batch(val_text), tokenizer.eot_id)
    print0(f"corpus: {len(train_stream):,} train / {len(val_stream):,} val tokens, vocab {tokenizer.vocab_size}, "
           f"{time.time() - t0:.1f}s")
    return tokenizer, train_stream, val_stream


def make_optimizer(model: Transformer, cfg: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on norms, biases or MoE routing centroids)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.endswith("centroids")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.endswith("centroids")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95),
                             fused=cuda_paths(device))  # one kernel for every parameter on a GPU


@torch.no_grad()
def update_average(averaged: Transformer, model: Transformer, decay: float) -> None:
    """averaged <- decay * averaged + (1 - decay) * model, parameter by parameter; buffers (RoPE tables, MoE
    routing biases) are copied. The average changes little from step to step where the trained weights wander:
    which of its styles the base model prefers (step by step or direct) drifts by tens of points between
    checkpoints 100 steps apart, and the average of the last ~1 / (1 - decay) steps settles it."""
    for a, p in zip(averaged.parameters(), model.parameters()):
        a.lerp_(p, 1 - decay)
    for a, b in zip(averaged.buffers(), model.buffers()):
        a.copy_(b)


def fewest_micro_batches(model: Transformer, rows: int) -> int:
    """The smallest divisor d of rows whose micro-batches of rows / d fit the device's memory (1 where the
    memory is unknown: the CPU)."""
    fits = micro_batch(model, "train", rows, model.cfg.block_size)
    return next(d for d in range(1, rows + 1) if rows % d == 0 and rows // d <= fits)


def train_step(model, forward, optimizer, x: torch.Tensor, y: torch.Tensor, cfg: PretrainConfig,
               device: torch.device):
    """One update on this rank's slice of the batch, in cfg.grad_accum micro-batches: each micro-batch's
    mean loss / grad_accum sums to the slice's mean. Returns (loss, gradient norm, MoE expert loads)."""
    optimizer.zero_grad(set_to_none=True)
    mtp_weight = cfg.mtp_lambda if cfg.mtp_depth else 0.0  # L = L_main + lambda / D * sum_k L_MTP^k
    loss = torch.zeros((), device=device)
    micro = len(x) // cfg.grad_accum
    for _, (xm, ym) in accumulate(forward, list(zip(x.split(micro), y.split(micro)))):
        with autocast(device):
            _, micro_loss = forward(xm.to(device), ym.to(device), mtp_weight=mtp_weight)
        (micro_loss / cfg.grad_accum).backward()
        loss += micro_loss.detach() / cfg.grad_accum
    grad_norm, loads = apply_update(model, optimizer, loss, cfg.grad_clip)
    return loss, grad_norm, loads


@torch.no_grad()
def eval_loss(model, val_stream, cfg: PretrainConfig, device: torch.device, mtp: bool = False) -> float:
    """Mean loss on the same validation windows every time (comparable numbers, the same on every rank): the
    next-token loss alone (the MTP loss is not in it, so runs with and without MTP compare), or with `mtp`,
    the mean of the MTP modules' losses."""
    model.eval()
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(cfg.eval_batches):
        x, y = random_windows(val_stream, cfg.batch_size, model.cfg.block_size, g)
        with autocast(device):
            if mtp:
                losses.append(torch.stack(model.mtp_losses(model.trunk(x.to(device)), y.to(device))).mean().item())
            else:
                losses.append(model(x.to(device), y.to(device))[1].item())
    model.train()
    return float(np.mean(losses))


@torch.no_grad()
def dev_curve(model, tokenizer, cfg: PretrainConfig) -> dict:
    """One point of the learning curve that matters downstream: dev-split pass@1 per task under the R1-Zero
    template (k samples at T 0.6, top-p 0.95, as R1-Zero's own checks), and how the replies split: the share
    answered step by step and its accuracy, the accuracy of direct answers, the share that check themselves.
    Sampling draws from its own seeded generator, so the training run is the same with or without it."""
    model.eval()
    row = {}
    for name, task in suite(cfg.suite).items():
        problems = heldout_problems({name: task}, cfg.curve_problems, seed=0, split="dev")
        result = heldout_eval(model, tokenizer, {"en": problems}, k=cfg.curve_k,
                              max_new_tokens=cfg.curve_max_new_tokens, chat=False)["en"][0]
        for key in ("pass@1", "steps_share", "steps_acc", "direct_acc", "reflect_share"):
            row[f"dev_{task.label}_{key}"] = round(result[key], 4)
    model.train()
    return row


if __name__ == "__main__":
    run_script(main)
