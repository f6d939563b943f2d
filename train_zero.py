"""R1-Zero: reinforcement learning straight from the base model, with rule rewards only (DeepSeek-R1 §2.2).

Every step draws training problems, samples a group of G completions per prompt under the R1-Zero
template (temperature 1), scores each with the paper's two rule rewards, accuracy (the task's checker on
the answer block) and format (exactly one think block, then one non-empty answer block), added with equal
weight, and takes GRPO updates (r1mini/grpo.py: group-normalised advantages, eq. 3; clipped surrogate and
k3 KL, eq. 1-2). Nothing is supervised: whatever the model does better (reasoning step by step, checking
itself) it has to find among its own samples.

The policy is updated mu times on each rollout batch, in `minibatches` slices; old log-probs are taken
before the first update (with mu = minibatches = 1 the update is on-policy, ratio = 1, as R1 ran it). The
KL term's reference model is frozen and reset to the current policy every `ref_reset_every` steps, as
the paper did. Options from later work: agg token-mean / constant, scale none, clip_eps_high (clip-higher),
drop_uniform_groups (dynamic sampling: groups whose rewards are all equal carry no signal).

Departures: tiny scale (a ~1M-parameter model, ~100-token answers); the template is the shortened one
in r1mini/data.py.

Logs per step (log.jsonl): reward, accuracy, format, length, steps_share, reflection, mixed_lang,
mixed_groups, kl, clip_frac, entropy, t_gen, t_train, gen_tokens_per_s, train_tokens_per_s, tflops (training), mfu
(on GPUs of known peak), peak_mem_mb; every eval_every steps held-out pass@1 (k samples at
T=0.6, top-p 0.95) and a few samples in samples.jsonl. Rerun the same command to resume.

    python train_zero.py                    # from out/base, writes out/zero
    python train_zero.py --preset toy       # seconds
    python train_zero.py --kl_coef 0.001 --mu 2 --clip_eps_high 0.28
    torchrun --nproc_per_node=2 train_zero.py
    python train_zero.py --preset gpu --compile true
"""
from __future__ import annotations

import copy
import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from r1mini.common import (JsonlLogger, autocast, check_replicas_in_sync, load_checkpoint, load_train_state,
                           parse_config, pick_device, print0, random_states, save_checkpoint, seed_everything,
                           set_random_states, setup_distributed, step_guard, teardown_distributed, throughput)
from r1mini.data import write_jsonl, zero_prompt
from r1mini.evaluate import heldout_problems, sample_completions, score
from r1mini.grpo import group_advantages, grpo_update, rollout
from r1mini.filters import mixed_language
from r1mini.rewards import count_reflection_words, is_step_by_step, zero_reward
from r1mini.tasks import suite


@dataclass
class ZeroConfig:
    # problems
    suite: str = ""  # task suite; "" means the one the base model was pretrained on
    zh_share: float = 0.2  # share of prompts asked in Chinese
    # rollouts
    steps: int = 150
    prompts_per_step: int = 8  # all ranks together
    group_size: int = 8  # G completions per prompt
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    # GRPO
    lr: float = 1e-4  # 3e-4 collapsed one cpu run to accuracy 0 within 25 steps; 1e-4 climbed steadily
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    mu: int = 1  # updates per rollout batch
    minibatches: int = 1  # slices of the rollout batch per update
    micro_batch_size: int = 0  # > 0: each update accumulates gradients over chunks of this many rows (memory)
    clip_eps: float = 0.2
    clip_eps_high: float = 0.2  # > clip_eps: clip-higher (DAPO uses 0.28)
    kl_coef: float = 0.0  # beta; > 0 keeps a frozen reference model
    ref_reset_every: int = 50  # steps between reference resets (the paper: every 400)
    agg: str = "seq-mean"  # seq-mean (GRPO), token-mean (DAPO), constant (Dr. GRPO)
    scale: str = "std"  # std (GRPO) or none (Dr. GRPO)
    drop_uniform_groups: bool = False
    compile: bool = False  # torch.compile the training forward (dynamic shapes: rollout lengths vary)
    # evaluation and bookkeeping
    eval_every: int = 25
    eval_problems: int = 25  # held-out problems per task (English prompts)
    eval_k: int = 8
    log_samples: int = 4
    ckpt_every: int = 25


PRESETS = {
    "toy": dict(steps=4, prompts_per_step=2, group_size=4, max_new_tokens=24, eval_every=2, eval_problems=2,
                eval_k=2, log_samples=1, ckpt_every=2),
    "cpu": dict(),
    "gpu": dict(steps=400, prompts_per_step=32, group_size=16, max_new_tokens=384, eval_every=50,
                eval_problems=100, eval_k=16, ckpt_every=50),
}


def main(argv=None):
    cfg, args = parse_config(ZeroConfig, PRESETS, __doc__, argv, default_init="out/base", default_out="out/zero")
    device = pick_device(args.device)
    rank, world = setup_distributed(device)
    if cfg.prompts_per_step % world:
        raise SystemExit(f"--prompts_per_step {cfg.prompts_per_step} must divide by the {world} ranks")
    seed_everything(args.seed + rank)
    out = Path(args.out)

    state = load_train_state(out)
    init = out if state is not None else Path(args.init)
    model, tokenizer, meta = load_checkpoint(init, device, expect_stage=None if state is not None else "base")
    base_meta = meta if state is None else {"config": meta.get("base_config", {})}
    suite_name = cfg.suite or base_meta.get("config", {}).get("suite") or args.preset
    tasks = suite(suite_name)
    task_list = list(tasks.values())
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    problem_rng = random.Random(args.seed * 1000 + rank)  # whole groups stay on one rank: ranks draw their own prompts
    gen = torch.Generator(device=device).manual_seed(args.seed + rank)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr  # the command line's, e.g. lowered after a NaN stopped the run
        set_random_states(state, problem_rng, gen)
        step = state["step"]
        print0(f"resuming {out} from step {step}")
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
    if ref_model is not None and state is not None and "ref_model" in state:
        ref_model.load_state_dict(state["ref_model"])  # the policy of the last reset, not the current one
    ddp_model = torch.compile(model, dynamic=True) if cfg.compile else model  # training forward; generate stays eager
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(ddp_model, device_ids=[device.index] if device.type == "cuda" else None)
    logger = JsonlLogger(out / "log.jsonl")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for f in ("log.jsonl", "samples.jsonl"):  # rows after the checkpoint (all rows: none) would appear twice
            JsonlLogger(out / f).drop_after(step if state is not None else -1)
    eval_set = heldout_problems(tasks, cfg.eval_problems, seed=args.seed)
    print0(f"R1-Zero from {init} on {suite_name} ({', '.join(tasks)}): {cfg.prompts_per_step} prompts x "
           f"{cfg.group_size} samples per step, {cfg.steps} steps, device {device}, world {world}")

    def evaluate(step: int) -> dict:
        model.eval()
        samples = sample_completions(model, tokenizer, eval_set, cfg.eval_k, temperature=0.6, top_p=0.95,
                                     max_new_tokens=cfg.max_new_tokens, seed=1234)
        result = score(samples, cfg.eval_k)
        if rank == 0:
            write_jsonl(out / "samples.jsonl", [{"step": step, "question": s.problem.question,
                                                "answer": s.problem.answer, "completion": s.completions[0]}
                                               for s in samples[::max(1, len(samples) // cfg.log_samples)]],
                        append=True)
        model.train()
        return {"eval_pass@1": round(result["pass@1"], 4), f"eval_pass@{cfg.eval_k}": round(result[f"pass@{cfg.eval_k}"], 4),
                "eval_format": round(result["format"], 4), "eval_steps_share": round(result["steps_share"], 4)}

    def checkpoint(metrics: dict):
        new_meta = {"stage": "zero", "parent": str(args.init), "step": step, "done": step == cfg.steps,
                    "preset": args.preset, "seed": args.seed, "config": {**dataclasses.asdict(cfg), "suite": suite_name},
                    "base_config": base_meta.get("config", {}), "metrics": metrics}
        save_checkpoint(out, model, tokenizer, new_meta, {"optimizer": optimizer.state_dict(), "step": step,
                                                          **random_states(problem_rng, gen),
                                                          **({"ref_model": ref_model.state_dict()} if ref_model is not None else {})})

    if step == 0:
        start = evaluate(0)
        logger.log({"step": 0, **start})
        print0(f"step 0: {start}")
    n_local = cfg.prompts_per_step // world
    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, desc="R1-Zero", dynamic_ncols=True)
    metrics: dict = {}
    while step < cfg.steps:
        if ref_model is not None and step % cfg.ref_reset_every == 0:
            ref_model.load_state_dict(model.state_dict())  # reset the reference to the current policy
        # -- rollout: G samples per prompt, rule rewards, group advantages -----------------------------------
        t0 = time.time()
        problems = []
        for _ in range(n_local):
            task = problem_rng.choice(task_list)
            problems.append(task.sample(problem_rng, "train", "zh" if problem_rng.random() < cfg.zh_share else "en"))
        memory_flags = "--group_size, --prompts_per_step or --max_new_tokens"
        model.eval()
        with autocast(device), step_guard(f"step {step + 1} (rollout)", out, "--lr", memory_flags):
            ro = rollout(model, tokenizer, [tokenizer.encode(zero_prompt(p.question)) for p in problems], cfg.group_size,
                         max_new_tokens=cfg.max_new_tokens, stop_ids=[tokenizer.eot_id], temperature=cfg.temperature,
                         top_p=cfg.top_p, generator=gen)
        model.train()
        group_problems = [p for p in problems for _ in range(cfg.group_size)]
        acc, fmt = map(list, zip(*(zero_reward(c, p) for c, p in zip(ro.completions, group_problems))))
        rewards = torch.tensor(acc, device=device) + torch.tensor(fmt, device=device)  # equal weight, as in the paper
        advantages = group_advantages(rewards, cfg.group_size, cfg.scale)
        grouped = rewards.view(-1, cfg.group_size)
        mixed = (grouped.max(1).values != grouped.min(1).values)  # groups whose samples differ: the signal
        keep = mixed.repeat_interleave(cfg.group_size) if cfg.drop_uniform_groups else torch.ones_like(rewards, dtype=torch.bool)
        t_gen = time.time() - t0

        # -- update: mu passes over the batch, in minibatches ------------------------------------------------
        t0 = time.time()
        with step_guard(f"step {step + 1} (update)", out, f"--lr (now {cfg.lr})", memory_flags + " (or set --micro_batch_size)"):
            upd = grpo_update(model, optimizer, ro, advantages, keep, mu=cfg.mu, minibatches=cfg.minibatches,
                              clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high, kl_coef=cfg.kl_coef,
                              ref_model=ref_model, agg=cfg.agg, max_len=cfg.max_new_tokens, grad_clip=cfg.grad_clip,
                              autocast_ctx=lambda: autocast(device), ddp_model=ddp_model,
                              micro_batch_size=cfg.micro_batch_size)
        t_train = time.time() - t0
        step += 1
        bar.update(1)

        # -- metrics ------------------------------------------------------------------------------------------
        local = torch.tensor([np.mean(acc), np.mean(fmt), rewards.mean().item(), np.mean(ro.lengths),
                              np.mean([is_step_by_step(c) for c in ro.completions]),
                              np.mean([count_reflection_words(c) for c in ro.completions]),
                              np.mean([mixed_language(c) for c in ro.completions]), mixed.float().mean().item(),
                              upd["kl"], upd["clip_frac"], upd["entropy"]], dtype=torch.float64)
        if world > 1:
            local = local.to(device)
            torch.distributed.all_reduce(local, op=torch.distributed.ReduceOp.AVG)
        names = ("accuracy", "format", "reward", "length", "steps_share", "reflection", "mixed_lang",
                 "mixed_groups", "kl", "clip_frac", "entropy")
        train_tokens = world * ro.ids.numel() * cfg.mu  # forward + backward passes over the (padded) batch
        metrics = {"step": step, **{n: round(float(v), 4) for n, v in zip(names, local.tolist())},
                   "t_gen": round(t_gen, 2), "t_train": round(t_train, 2),
                   "gen_tokens_per_s": round(world * sum(ro.lengths) / max(t_gen, 1e-6)), "train_tokens_per_s": round(train_tokens / max(t_train, 1e-6)),
                   **throughput(train_tokens / max(t_train, 1e-6), model.flops_per_token(), device, world)}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics.update(evaluate(step))
            print0(f"\nstep {step}: " + " ".join(f"{k}={v}" for k, v in metrics.items() if k != "step"))
        logger.log(metrics)
        bar.set_postfix(acc=metrics["accuracy"], fmt=metrics["format"], len=round(metrics["length"]))
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint(metrics)
    bar.close()
    print0(f"replicas in sync: parameter checksum {check_replicas_in_sync(model)!r} on {world} rank(s)")
    print0(f"done: wrote {out}")
    teardown_distributed()


if __name__ == "__main__":
    main()
