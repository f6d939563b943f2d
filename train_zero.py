"""R1-Zero: reinforcement learning straight from the base model, with rule rewards only (DeepSeek-R1 §2.2).

Every step draws training problems, samples a group of G completions per prompt under the R1-Zero
template (temperature 1), scores each with the paper's two rule rewards, accuracy (the task's checker on
the answer block) and format (exactly one think block, then one non-empty answer block), added with equal
weight, and takes GRPO updates (r1mini/rl.py, the step every RL stage shares; the math in r1mini/grpo.py:
group-normalised advantages, eq. 3; clipped surrogate and k3 KL, eq. 1-2). Nothing is supervised: whatever
the model does better (reasoning step by step, checking itself) it has to find among its own samples.

The policy is updated mu times on each rollout batch, in `minibatches` slices; old log-probs are taken
before the first update (with mu = minibatches = 1 the update is on-policy, ratio = 1, as R1 ran it). The
KL term's reference model is frozen and reset to the current policy every `ref_reset_every` steps, as
the paper did. Options from later work: agg token-mean / constant, scale none, clip_eps_high (clip-higher),
drop_uniform_groups (dynamic sampling: groups whose rewards are all equal carry no signal).

Departures: tiny scale (a ~1M-parameter model, ~100-token answers); the template is the shortened one
in r1mini/formats.py.

Logs per step (log.jsonl): reward, accuracy, format, length, steps_share, reflection (words per reply),
reflect_acc and plain_acc (the accuracy of replies with and without reflection), mixed_lang,
mixed_groups, kl, clip_frac, entropy, t_gen, t_train, gen_tokens_per_s, train_tokens_per_s, tflops (training), mfu
(on GPUs of known peak), peak_mem_mb; every eval_every steps dev-split pass@1 (k samples at
T=0.6, top-p 0.95; English prompts, or a JSONL file's Chinese ones where it has no English dev problems) with its
95% interval, and a few samples in samples.jsonl; aha.jsonl keeps each step's first training reply that
reflects and is right. Rerun the same command to resume.

    python train_zero.py                    # from out/base, writes out/zero
    python train_zero.py --preset toy       # seconds: out/toy/base -> out/toy/zero
    python train_zero.py --kl_coef 0.001 --mu 2 --clip_eps_high 0.28
    torchrun --nproc_per_node=2 train_zero.py
    python train_zero.py --preset gpu --compile true
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import torch
from tqdm import tqdm

from r1mini.checkpoint import (load_checkpoint, load_train_state, restore_rngs, save_checkpoint, save_rngs,
                               seed_everything)
from r1mini.config import NON_NEGATIVE, SHARE, TASKS_FILE, name_in, parse_config
from r1mini.device import pick_device
from r1mini.distributed import (is_main, print0, report_replicas_in_sync, run_script, setup_distributed,
                                teardown_distributed)
from r1mini.evaluate import heldout_eval
from r1mini.formats import answer_format, prompt_ids, stop_ids
from r1mini.jsonl import JsonlLogger, write_jsonl
from r1mini.rewards import corrects_itself, count_reflection_words, load_reward, zero_rewards
from r1mini.rl import GRPOConfig, Policy, grpo_step, make_policy, resume_policy
from r1mini.stage import (GRPO_MEMORY_FLAGS, dev_sets, exits_with_message, no_dev_note, reply_metrics, stage_meta,
                          stage_tasks, step_guard)
from r1mini.tasks import SUITES, draw_problems


@dataclass
class ZeroConfig(GRPOConfig):  # every GRPO option (r1mini/rl.py), then these
    # problems
    suite: str = ""  # task suite; "" means the one the base model was pretrained on
    zh_share: float = 0.2  # share of prompts asked in Chinese
    format_weight: float = 1.0  # the format reward's weight beside accuracy's 1 (the paper: equal weights)
    steps: int = 120  # GRPO steps, each a batch of rollouts
    # evaluation and bookkeeping
    eval_every: int = 40  # steps between dev-split checks
    eval_problems: int = 25  # dev-split problems per task (English prompts; eval.py tests on the test split)
    eval_k: int = 4  # samples per dev problem (pass@1 averages them)
    log_samples: int = 4  # dev completions written to samples.jsonl per check
    ckpt_every: int = 25  # steps between checkpoints to resume from
    tasks: str = ""  # a JSONL task file (FILE.jsonl or FILE.jsonl:CHECKER) instead of the suite

    RULES: ClassVar[dict] = {"suite": name_in(SUITES, allow_empty=True, allow_import=True), "zh_share": SHARE,
                             "format_weight": NON_NEGATIVE,
                             "log_samples": NON_NEGATIVE, "tasks": TASKS_FILE}


PRESETS = {
    "toy": dict(steps=4, prompts_per_step=2, group_size=4, max_new_tokens=24, eval_every=2, eval_problems=2,
                eval_k=2, log_samples=1, ckpt_every=2),
    "cpu": dict(),
    "gpu": dict(steps=400, prompts_per_step=32, group_size=16, max_new_tokens=384, eval_every=50,
                eval_problems=100, eval_k=16, ckpt_every=50),
}


@dataclass
class ZeroRun:
    """What the loop works with: the policy, the run's random streams, and where it reads and writes."""
    cfg: ZeroConfig
    args: object  # the command line's --out, --init, --preset, --seed
    policy: Policy
    tokenizer: object
    suite_name: str
    tasks: dict
    problem_rng: random.Random  # whole groups stay on one rank: each rank draws its own prompts
    sampler: torch.Generator
    base_config: dict  # the config the base model was pretrained with
    step: int = 0


@exits_with_message
def main(argv=None):
    cfg, args = parse_config(ZeroConfig, PRESETS, __doc__, argv, default_init="out/base", default_out="out/zero")
    seen = {}  # what the reward saw last: each step's replies, for aha.jsonl
    rule_rewards = partial(zero_rewards, format_weight=cfg.format_weight)
    reward_fn = keeping(load_reward(cfg.reward) if cfg.reward else rule_rewards, seen)  # a wrong name fails here
    device = pick_device(args.device)
    rank, world = setup_distributed(device)
    n_prompts = cfg.prompts_per_rank(world)  # whole groups stay on one rank: each rank draws its own prompts
    seed_everything(args.seed + rank, device)
    run = start(cfg, args, device, rank)
    out, policy, tokenizer = Path(args.out), run.policy, run.tokenizer
    # the dev check asks in English; a JSONL file with no English dev problems (all Chinese), in Chinese
    dev = dev_sets(run.tasks, cfg.eval_problems, args.seed)
    eval_set = {lang: dev[lang] for lang in ["en" if dev["en"] or not dev["zh"] else "zh"]}
    logger = JsonlLogger(out / "log.jsonl")
    print0(f"R1-Zero from {args.init} on {run.suite_name} ({', '.join(run.tasks)}): {cfg.prompts_per_step} prompts "
           f"x {cfg.group_size} samples per step, {cfg.steps} steps, device {device}, world {world}; dev check on "
           f"{sum(map(len, eval_set.values()))} {'/'.join(eval_set)} problems")
    if note := no_dev_note(run.tasks, eval_set):
        print0(note)
    if run.step == 0:
        start_metrics = heldout_check(run, eval_set, out)
        logger.log({"step": 0, **start_metrics})
        print0("step 0: " + " ".join(f"{k}={v}" for k, v in start_metrics.items()))

    bar = tqdm(total=cfg.steps, initial=run.step, disable=rank != 0, desc="R1-Zero", dynamic_ncols=True)
    while run.step < cfg.steps:
        # -- GRPO: this rank's prompts -> G samples each -> accuracy + format rewards -> advantages -> update ----
        problems = draw_problems(run.problem_rng, run.tasks, n_prompts, cfg.zh_share)
        prompts = [prompt_ids(tokenizer, p.question, False, answer_format(p))[0] for p in problems]
        with step_guard(f"step {run.step + 1}", out, f"--lr (now {cfg.lr})", GRPO_MEMORY_FLAGS):
            metrics = grpo_step(policy, tokenizer, prompts, problems, reward_fn, cfg, step=run.step,
                                stop_ids=stop_ids(tokenizer, chat=False), generator=run.sampler,
                                reply_metrics=reply_metrics)
        run.step += 1
        metrics = {"step": run.step, **metrics}
        if is_main():
            log_aha(out / "aha.jsonl", run.step, seen)

        # -- dev-split check, log, checkpoint ---------------------------------------------------------------
        if run.step % cfg.eval_every == 0 or run.step == cfg.steps:
            metrics.update(heldout_check(run, eval_set, out))
            print0(f"\nstep {run.step}: " + " ".join(f"{k}={v}" for k, v in metrics.items() if k != "step"))
        logger.log(metrics)
        bar.update(1)
        bar.set_postfix(reward=metrics["reward"], acc=metrics.get("accuracy"), len=round(metrics["length"]))
        if run.step % cfg.ckpt_every == 0 or run.step == cfg.steps:
            save(run, out, metrics)
    bar.close()
    report_replicas_in_sync(policy.model)
    print0(f"done: wrote {out}")
    teardown_distributed()


def start(cfg: ZeroConfig, args, device: torch.device, rank: int) -> ZeroRun:
    """The run in --out where one was interrupted (weights, optimizer, random states), else a fresh one from
    the base model in --init. Drops the log rows of steps that will run again."""
    out = Path(args.out)
    state = load_train_state(out)
    if state is None:
        model, tokenizer, meta = load_checkpoint(args.init, device, expect_stage="base", made_by="pretrain.py",
                                                 preset=args.preset)
        base_config = meta.get("config", {})
    else:
        model, tokenizer, meta = load_checkpoint(out, device, preset=args.preset)
        base_config = meta.get("base_config", {})
    suite_name, tasks = stage_tasks(cfg.suite, cfg.tasks, {"config": base_config}, args.preset)
    policy = make_policy(model, cfg, device)
    run = ZeroRun(cfg, args, policy, tokenizer, suite_name, tasks, random.Random(args.seed * 1000 + rank),
                  torch.Generator(device=device).manual_seed(args.seed + rank), base_config)
    if state is not None:
        run.step = resume_policy(policy, state, out, cfg.lr)
        restore_rngs(state, run.problem_rng, run.sampler)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for f in ("log.jsonl", "samples.jsonl", "aha.jsonl"):  # rows after the checkpoint would appear twice
            JsonlLogger(out / f).drop_after(run.step if state is not None else -1)
    return run


def keeping(reward_fn, seen: dict):
    """reward_fn, keeping in `seen` what it was last given and the accuracy part of what it returned."""
    def reward(completions, items):
        rewards, parts = reward_fn(completions, items)
        seen.update(completions=completions, items=items, accuracy=parts.get("accuracy"))
        return rewards, parts
    return reward


def log_aha(path: Path, step: int, seen: dict, keep: int = 4) -> None:
    """The step's training replies (this rank's) that reflect ("wait", "check", ...) and are right, with their
    prompts: the candidates for the aha moment the report quotes (R1's Table 3). Up to `keep` of them, those that
    correct themselves ("wait" after a check that disagreed) before those whose check only confirms."""
    accuracy = seen.get("accuracy") or []
    right = [(reply, problem) for reply, problem, ok in zip(seen.get("completions", []), seen.get("items", []),
                                                            accuracy) if ok and count_reflection_words(reply)]
    right = sorted(right, key=lambda rp: not corrects_itself(rp[0]))[:keep]  # a stable sort
    write_jsonl(path, [{"step": step, "question": problem.question, "answer": problem.answer, "completion": reply,
                        "corrects": corrects_itself(reply)} for reply, problem in right], append=True)


def heldout_check(run: ZeroRun, problems: dict[str, list], out: Path) -> dict:
    """Held-out pass@1 (k samples at T 0.6, top-p 0.95; its 95% interval over problems) under the R1-Zero
    template, on the problems of one language; a few of the samples go to samples.jsonl. Nothing without
    problems."""
    cfg, model = run.cfg, run.policy.model
    if not any(problems.values()):
        return {}
    model.eval()
    (result, samples), = heldout_eval(model, run.tokenizer, problems, k=cfg.eval_k,
                                      max_new_tokens=cfg.max_new_tokens, chat=False).values()
    model.train()
    if is_main():
        shown = samples[::max(1, len(samples) // cfg.log_samples)]
        rows = [{"step": run.step, "question": s.problem.question, "answer": s.problem.answer,
                 "completion": s.completions[0]} for s in shown]
        write_jsonl(out / "samples.jsonl", rows, append=True)
    k = cfg.eval_k
    return {"eval_pass@1": round(result["pass@1"], 4), "eval_pass@1_ci": [round(x, 4) for x in result["pass@1_ci"]],
            f"eval_pass@{k}": round(result[f"pass@{k}"], 4),
            "eval_format": round(result["format"], 4), "eval_steps_share": round(result["steps_share"], 4),
            "eval_reflect_share": round(result["reflect_share"], 4),
            "eval_reflect_acc": round(result["reflect_acc"], 4), "eval_plain_acc": round(result["plain_acc"], 4)}


def save(run: ZeroRun, out: Path, metrics: dict) -> None:
    cfg, args = run.cfg, run.args
    meta = stage_meta("zero", args, cfg, parent=str(args.init), step=run.step, done=run.step == cfg.steps,
                      metrics=metrics, suite=run.suite_name, base_config=run.base_config)
    state = {**run.policy.train_state(), "step": run.step, **save_rngs(run.problem_rng, run.sampler)}
    save_checkpoint(out, run.policy.model, run.tokenizer, meta, state)


if __name__ == "__main__":
    run_script(main)
