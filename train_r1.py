"""DeepSeek-R1: the four-stage pipeline (DeepSeek-R1 §2.3), from the base model and the R1-Zero model.

R1-Zero reasons but mixes languages and reads badly. R1 fixes that in four stages, each reading the
previous checkpoint and writing its own under out/r1/:

1. cold_start: sample the R1-Zero model on training prompts, keep correct samples written in the prompt's
   language without repetition, rewrite them into the readable chat format (r1mini/formats.py: a think block,
   then a summary ending in the answer), top up with worked solutions from tasks.py when too few survive (from
   a --tasks file: its lines' "solution" fields, if it has them), and SFT the *base* model on them (loss on the
   assistant's tokens only).
2. reasoning_rl: GRPO from the cold-start model (r1mini/rl.py, the step R1-Zero uses too, with every GRPO
   option of R1-Zero); reward = accuracy + format + language consistency (the share of the reasoning's
   words in the prompt's language, §2.3.2).
3. rejection_sft: sample the stage-2 model several times per training prompt; keep correct samples with
   no mixed language, no overlong paragraph, no code block, deduplicated (r1mini/filters.py); add
   non-reasoning chat data at about the paper's 3:1 ratio; SFT the *base* model again, for 2 epochs.
4. final_rl: train a reward model (the SFT model with a scalar head, Bradley-Terry loss on preference
   pairs made by code), then a short GRPO phase on a mix of reasoning prompts (rule rewards + language)
   and general prompts (the reward model's score of the summary for helpful prompts, of the whole reply
   for unsafe ones, plus format: no reasoning block for chat).

`--reward module:function` replaces the reasoning prompts' reward in stages 2 and 4 with your own
(docs/extending.md); the general prompts keep theirs.

Each stage ends with an evaluation on dev-split problems, English and Chinese prompts separately (pass@1
over k samples at T=0.6, top-p 0.95, and language consistency), stored in its meta.json; R1-Zero is
evaluated on the same problems first, for comparison. `--stage all` runs the stages not yet done, so an
interrupted pipeline resumes at the stage it was in: a GRPO stage from its last checkpoint (every
--rl_ckpt_every steps, with its optimizer, reward model and random states), an SFT stage from its start with
the random states it began with, so a killed run ends bit for bit where an uninterrupted one ends.
`--stage NAME` (re)runs one.

    python train_r1.py                        # from out/zero (and the base model it was trained from)
    python train_r1.py --preset toy           # seconds: out/toy/zero -> out/toy/r1/...
    python train_r1.py --stage final_rl       # rerun one stage
    torchrun --nproc_per_node=2 train_r1.py   # data parallel

Under torchrun every rank draws the same problems from the same seeded RNG and works on its stripe: sampling
(cold start, rejection sampling, evaluation) is striped across ranks and gathered back in order, SFT trains
each rank on its slice of the same global batch (DDP), GRPO gives each rank whole groups of its stripe of
prompts and all-reduces the metrics. The reward model is trained on every rank alike (it is small). Rank 0
logs and saves; the sampled data differ from a one-process run (each rank has its own sampling seed).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import torch
import torch.distributed as dist
from tqdm import tqdm

from r1mini.chat_data import general_prompts, preference_pairs
from r1mini.checkpoint import (check_preset, is_done, load_checkpoint, load_train_state, restore_rngs, save_checkpoint,
                               save_rngs, seed_everything)
from r1mini.config import NON_NEGATIVE, POSITIVE, SHARE, TASKS_FILE, UserError, name_in, parse_config
from r1mini.device import autocast, pick_device
from r1mini.distributed import print0, report_replicas_in_sync, run_script, setup_distributed, teardown_distributed
from r1mini.files import atomic_save, atomic_write_json
from r1mini.formats import chat_ids, stop_ids
from r1mini.jsonl import JsonlLogger, write_jsonl
from r1mini.reward_model import RewardModel, pairwise_accuracy, score_texts, train_reward_model
from r1mini.rewards import all_scenario_rewards, load_reward, reasoning_rewards
from r1mini.rl import GRPOConfig, grpo_step, make_policy, resume_policy
from r1mini.sampling import sample_striped
from r1mini.sft_data import cold_start_data, rejection_sampling_data
from r1mini.stage import (GRPO_MEMORY_FLAGS, dev_check, dev_sets, exits_with_message, no_dev_note, reply_metrics,
                          sft_from_base, stage_meta, stage_tasks, step_guard)
from r1mini.tasks import SUITES, Problem, draw_problems

STAGE_NAMES = ("cold_start", "reasoning_rl", "rejection_sft", "final_rl")
PREVIOUS = dict(zip(STAGE_NAMES[1:], STAGE_NAMES))  # the stage each later one follows


@dataclass
class R1Config(GRPOConfig):  # every GRPO option (r1mini/rl.py) for both RL stages, then these
    max_new_tokens: int = 224  # the longest completion; a reply whose check disagrees runs to ~180 tokens
    lr: float = 5e-5  # GRPO's, lower than R1-Zero's: these policies start sharp, and a large step undoes the SFT
    stage: str = "all"  # all (the stages not done yet), or one of cold_start, reasoning_rl, rejection_sft, final_rl
    base: str = ""  # base checkpoint; "" means the R1-Zero checkpoint's parent
    suite: str = ""  # "" means the base model's
    zh_share: float = 0.4  # share of prompts asked in Chinese
    # stage 1: cold start
    cold_prompts: int = 300  # training prompts the R1-Zero model is sampled on
    cold_samples: int = 4  # R1-Zero samples per prompt
    cold_examples: int = 1200  # topped up with worked solutions to this many
    sft_epochs: int = 2  # of the cold-start SFT
    sft_batch_size: int = 32  # SFT sequences per step, all ranks together
    sft_lr: float = 1e-3  # SFT's peak learning rate
    sft_micro_batch_size: int = 0  # > 0: gradient accumulation over micro-batches of this many rows per rank
    # stage 2 and 4: GRPO
    rl_steps: int = 25  # GRPO steps of reasoning RL (stage 2)
    final_steps: int = 15  # GRPO steps of the final RL (stage 4)
    lang_weight: float = 1.0  # weight of the language-consistency reward
    rl_ckpt_every: int = 10  # a GRPO stage saves a checkpoint to resume from every this many steps
    general_share: float = 0.25  # share of general prompts in the final RL stage
    # stage 3: rejection sampling
    # on 1,000 prompts the cpu run kept 616 replies, half the cold start's 1,200 examples, and the SFT from the
    # base on them lost a fifth of the accuracy
    rs_prompts: int = 3000  # many prompts, few samples each: the samples of one prompt are often identical
    rs_samples: int = 2  # samples per prompt
    reasoning_ratio: float = 3.0  # reasoning : non-reasoning examples
    rs_epochs: int = 2  # of the rejection SFT (the paper ran 2)
    # stage 4: reward model
    rm_pairs: int = 2000  # preference pairs the reward model trains on
    # 60 steps at 1e-3: the held-out pair accuracy of 200 steps at 5e-4, in a third of the time
    # (docs/runs/reward_model_steps.md)
    rm_steps: int = 60  # reward-model training steps
    rm_batch_size: int = 32  # pairs per step
    rm_lr: float = 1e-3  # the reward model's learning rate
    # evaluation
    eval_problems: int = 25  # dev-split problems per task and language (eval.py tests on the test split)
    eval_k: int = 2  # samples per dev problem
    tasks: str = ""  # a JSONL task file (FILE.jsonl or FILE.jsonl:CHECKER) instead of the suite; "": R1-Zero's

    RULES: ClassVar[dict] = {
        "stage": (lambda v: v == "all" or v in STAGE_NAMES, "all or one of " + ", ".join(STAGE_NAMES)),
        "suite": name_in(SUITES, allow_empty=True, allow_import=True), "zh_share": SHARE, "general_share": SHARE,
        "tasks": TASKS_FILE,
        "sft_lr": POSITIVE, "rm_lr": POSITIVE, "reasoning_ratio": POSITIVE, "rl_steps": NON_NEGATIVE,
        "final_steps": NON_NEGATIVE, "sft_micro_batch_size": NON_NEGATIVE}


PRESETS = {
    "toy": dict(cold_prompts=4, cold_samples=2, cold_examples=24, sft_epochs=1, sft_batch_size=8, rl_steps=2,
                final_steps=2, rl_ckpt_every=1, prompts_per_step=2, group_size=2, max_new_tokens=24, rs_prompts=4,
                rs_samples=2, rm_pairs=40, rm_steps=3, rm_batch_size=8, eval_problems=2, eval_k=2),
    "cpu": dict(),
    "gpu": dict(cold_prompts=2000, cold_samples=4, cold_examples=8000, sft_batch_size=64, rl_steps=300,
                final_steps=100, prompts_per_step=32, group_size=16, max_new_tokens=384, lr=1e-4, rl_ckpt_every=50,
                rs_prompts=2000, rm_pairs=10000, rm_steps=600, rm_batch_size=64, rm_lr=5e-4, eval_problems=100,
                eval_k=16),
}


@dataclass
class R1Run:
    """What every stage reads: the config, where the pipeline lives, and its random streams."""
    cfg: R1Config
    args: object  # the command line's --init, --preset, --seed
    out: Path  # out/r1: one checkpoint directory per stage
    device: torch.device
    rank: int
    world: int
    tokenizer: object
    base_dir: str  # the base model every SFT stage starts from
    suite_name: str
    tasks: dict
    rng: random.Random  # the same on every rank: all ranks draw the same problems...
    sampler: torch.Generator  # ...but sample their own completions
    eval_sets: dict  # dev-split problems per language
    logger: JsonlLogger


@exits_with_message
def main(argv=None):
    cfg, args = parse_config(R1Config, PRESETS, __doc__, argv, default_init="out/zero", default_out="out/r1")
    reasoning_reward(cfg)  # a wrong --reward fails before any work
    device = pick_device(args.device)
    rank, world = setup_distributed(device)
    cfg.prompts_per_rank(world)  # checked before anything runs
    seed_everything(args.seed, device)
    run = start(cfg, args, device, rank, world)
    todo = [s for s in STAGE_NAMES if not is_done(run.out / s)] if cfg.stage == "all" else [cfg.stage]
    if cfg.stage == "all" and not (run.out / "zero_eval.json").exists():
        evaluate_zero(run)
    print0(f"R1 from {args.init} (base {run.base_dir}), suite {run.suite_name}: "
           f"stages {', '.join(todo) or 'none left'}")
    if note := no_dev_note(run.tasks, run.eval_sets):
        print0(note)
    # the random states after the last finished stage: a pipeline stopped between stages or in an SFT stage goes
    # on exactly as it would have without the stop (one stopped in a GRPO stage: see grpo_stage)
    saved = load_train_state(run.out)
    if cfg.stage == "all" and todo and saved and saved["after"] == PREVIOUS.get(todo[0]):
        restore_rngs(saved, run.rng, run.sampler)
    for stage in todo:
        t0 = time.time()
        model, metrics = STAGES[stage](run)
        parent = run.base_dir if stage == "cold_start" else str(run.out / PREVIOUS[stage])
        metrics = {**metrics, **evaluate(run, model), "seconds": round(time.time() - t0, 1)}
        save_stage(run, stage, model, parent, metrics)
        del model  # the next stage loads its own: this one would hold its weights and decoding caches meanwhile
    teardown_distributed()


def evaluate_zero(run: R1Run) -> None:
    """The R1-Zero model on the stages' dev problems, for comparison. Loaded here only: it goes, with the
    decoding caches it made, before the stages run (they count against every memory budget while it lives)."""
    zero_model, _, _ = load_checkpoint(run.args.init, run.device, expect_stage="zero", made_by="train_zero.py")
    zero_eval = evaluate(run, zero_model, chat=False)
    if run.rank == 0:
        atomic_write_json(zero_eval, run.out / "zero_eval.json")
    print0("[r1-zero] " + " ".join(f"{k}={v}" for k, v in zero_eval.items()))


def start(cfg: R1Config, args, device: torch.device, rank: int, world: int) -> R1Run:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _, tokenizer, zero_meta = load_checkpoint(args.init, "cpu", expect_stage="zero", made_by="train_zero.py",
                                              preset=args.preset)
    for stage in STAGE_NAMES:  # a run of another preset in --out is not resumed
        check_preset(Path(args.out) / stage, args.preset)
    suite_name, tasks = stage_tasks(cfg.suite, cfg.tasks, zero_meta, args.preset)
    return R1Run(cfg, args, out, device, rank, world, tokenizer,
                 base_dir=cfg.base or zero_meta.get("parent") or "out/base", suite_name=suite_name, tasks=tasks,
                 rng=random.Random(args.seed), sampler=torch.Generator(device=device).manual_seed(args.seed + rank),
                 eval_sets=dev_sets(tasks, cfg.eval_problems, args.seed), logger=JsonlLogger(out / "log.jsonl"))


# -- the four stages: each returns its model and metrics; main saves them ---------------------------------------

def cold_start(run: R1Run):
    """R1-Zero samples -> readable chat examples, topped up with worked solutions -> SFT of the base model."""
    cfg = run.cfg
    zero_model, _, _ = load_checkpoint(run.args.init, run.device, expect_stage="zero", made_by="train_zero.py")
    problems = draw_problems(run.rng, run.tasks, cfg.cold_prompts, cfg.zh_share)
    sampled = zip(problems, sample_texts(run, zero_model, problems, cfg.cold_samples, chat=False))
    pairs, from_zero = cold_start_data(sampled, cfg.cold_examples, run.tasks, run.rng, cfg.zh_share)
    if not pairs:  # only a JSONL file without worked solutions leaves none
        file = getattr(next(iter(run.tasks.values())), "path", "the task file")
        raise UserError(f"no cold-start data: the R1-Zero model in {run.args.init} was right, in format and in the "
                        f"prompt's language in none of {cfg.cold_prompts} x {cfg.cold_samples} samples, and {file} "
                        f"has no \"solution\" on its lines. Train R1-Zero longer (its dev pass@1 is in "
                        f"{run.args.init}/log.jsonl), sample more (--cold_prompts, --cold_samples), or give lines a "
                        f"worked \"solution\"")
    if run.rank == 0:
        write_jsonl(run.out / "cold_start_data.jsonl", [{"user": u, "assistant": a} for u, a in pairs])
    model, losses = sft(run, pairs, cfg.sft_epochs, "cold start SFT")
    return model, {"from_zero": from_zero, "from_tasks": len(pairs) - min(from_zero, cfg.cold_examples),
                   "zero_samples": cfg.cold_prompts * cfg.cold_samples, "sft_loss": round(losses[-1], 4)}


def reasoning_rl(run: R1Run):
    """GRPO from the cold-start model; reward: accuracy + format + language consistency."""
    model = load_stage(run, "cold_start")
    grpo_stage(run, model, "reasoning_rl", run.cfg.rl_steps, reasoning_reward(run.cfg), [],
               unfinished_state(run, "reasoning_rl"))
    return model, {}


def rejection_sft(run: R1Run):
    """Sample the reasoning-RL model, keep the correct and readable replies, add non-reasoning chat data,
    SFT the base model for rs_epochs (the paper: 2)."""
    cfg = run.cfg
    model = load_stage(run, "reasoning_rl")
    problems = draw_problems(run.rng, run.tasks, cfg.rs_prompts, cfg.zh_share)
    sampled = zip(problems, sample_texts(run, model, problems, cfg.rs_samples, chat=True))
    rows, counts = rejection_sampling_data(sampled, cfg.reasoning_ratio, seed=run.args.seed)
    if run.rank == 0:
        write_jsonl(run.out / "rejection_sft_data.jsonl", rows)
    model, losses = sft(run, [(r["user"], r["assistant"]) for r in rows], cfg.rs_epochs, "rejection SFT")
    return model, {**{f"filter/{k}": v for k, v in counts.items()}, "non_reasoning": len(rows) - counts["kept"],
                   "sft_loss": round(losses[-1], 4)}


def final_rl(run: R1Run):
    """A reward model trained on preference pairs, then GRPO on reasoning and general prompts."""
    cfg, device, tokenizer = run.cfg, run.device, run.tokenizer
    model = load_stage(run, "rejection_sft")
    rm = RewardModel.from_policy(model).to(device)
    state = unfinished_state(run, "final_rl")
    if state is not None:
        rm.load_state_dict(state["reward_model"])
        rm_metrics = state["metrics"]
    else:
        rm_metrics = train_rm(run, rm)
    rm.eval().requires_grad_(False)

    def score(users: list[str], texts: list[str]) -> list[float]:
        with torch.no_grad(), autocast(device):
            return score_texts(rm, tokenizer, users, texts, device).float().tolist()

    reward_fn = partial(all_scenario_rewards, lang_weight=cfg.lang_weight, score=score, reasoning=reasoning_reward(cfg))
    general_pool = general_prompts(max(200, cfg.final_steps * cfg.prompts_per_step), seed=run.args.seed, split="train")
    grpo_stage(run, model, "final_rl", cfg.final_steps, reward_fn, general_pool, state,
               extra_state={"reward_model": rm.state_dict(), "metrics": rm_metrics})
    return model, rm_metrics


STAGES = dict(zip(STAGE_NAMES, (cold_start, reasoning_rl, rejection_sft, final_rl)))


def reasoning_reward(cfg: R1Config):
    """The reward of a reasoning prompt in both RL stages: accuracy + format + language consistency (R1's), or
    the function --reward names (docs/extending.md)."""
    return load_reward(cfg.reward) if cfg.reward else partial(reasoning_rewards, lang_weight=cfg.lang_weight)


# -- what the stages share ----------------------------------------------------------------------------------------

def grpo_stage(run: R1Run, model, stage: str, steps: int, reward_fn, general_pool: list[dict], state: dict | None,
               extra_state: dict | None = None) -> None:
    """GRPO for `steps` steps on reasoning prompts and, with a general_pool, a general_share of general prompts;
    `state`: the train_state of this stage killed mid-way, to resume from (unfinished_state), or None. Every
    rl_ckpt_every steps a checkpoint to resume from, with extra_state (the reward model and its metrics)."""
    cfg, tokenizer = run.cfg, run.tokenizer
    policy = make_policy(model, cfg, run.device)
    step = 0
    if state is not None:
        step = resume_policy(policy, state, run.out / stage, cfg.lr)
        restore_rngs(state, run.rng, run.sampler)
    run.logger.drop_after(step, stage=stage)  # rows of steps that run again (all of them on a fresh start)
    n_general = round(cfg.prompts_per_step * cfg.general_share) if general_pool else 0
    bar = tqdm(total=steps, initial=step, desc=stage, dynamic_ncols=True, leave=False, disable=run.rank != 0)
    while step < steps:
        problems = draw_problems(run.rng, run.tasks, cfg.prompts_per_step - n_general, cfg.zh_share)
        drawn = problems + [run.rng.choice(general_pool) for _ in range(n_general)]
        # every rank drew the same prompts; it keeps its stripe (whole groups stay on one rank)
        items = [drawn[i] for i in range(run.rank, cfg.prompts_per_step, run.world)]
        questions = [item.question if isinstance(item, Problem) else item["user"] for item in items]
        prompts = [chat_ids(tokenizer, q)[0] for q in questions]
        with step_guard(f"{stage} step {step + 1}", run.out, f"--lr (now {cfg.lr})", GRPO_MEMORY_FLAGS):
            row = grpo_step(policy, tokenizer, prompts, items, reward_fn, cfg, step=step,
                            stop_ids=stop_ids(tokenizer, chat=True), generator=run.sampler, stage=stage,
                            reply_metrics=reply_metrics)
        step += 1
        bar.update(1)
        run.logger.log({"stage": stage, "step": step, **row})
        if step % cfg.rl_ckpt_every == 0 and step < steps:
            metrics = (extra_state or {}).get("metrics", {})  # the stage's metrics so far (the reward model's)
            meta = r1_meta(run, stage, str(run.out / PREVIOUS[stage]), metrics, step, done=False)
            save_checkpoint(run.out / stage, model, tokenizer, meta, {**policy.train_state(), "step": step,
                                                                      **save_rngs(run.rng, run.sampler),
                                                                      **(extra_state or {})})
    bar.close()


def train_rm(run: R1Run, rm: RewardModel) -> dict:
    """Bradley-Terry training on preference pairs; its loss and held-out pairwise accuracy, overall and by
    the kind of rejected reply."""
    cfg, seed = run.cfg, run.args.seed
    pairs_train = preference_pairs(cfg.rm_pairs, seed=seed, split="train")
    pairs_test = preference_pairs(max(50, cfg.rm_pairs // 5), seed=seed + 1, split="test")
    losses = train_reward_model(rm, run.tokenizer, pairs_train, steps=cfg.rm_steps, batch_size=cfg.rm_batch_size,
                                lr=cfg.rm_lr, device=run.device, seed=seed)
    metrics = {"rm_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
               "rm_accuracy": round(pairwise_accuracy(rm, run.tokenizer, pairs_test, run.device), 4)}
    for kind in sorted({p["kind"] for p in pairs_test}):
        subset = [p for p in pairs_test if p["kind"] == kind]
        metrics[f"rm_accuracy/{kind}"] = round(pairwise_accuracy(rm, run.tokenizer, subset, run.device), 4)
    return metrics


def sft(run: R1Run, pairs: list[tuple[str, str]], epochs: int, desc: str):
    """SFT of a fresh copy of the base model on (user, assistant) pairs; (model, loss of every step)."""
    cfg = run.cfg
    with step_guard("the SFT stage", run.out, "--sft_lr", "--sft_batch_size (or set --sft_micro_batch_size)"):
        model, _, _, losses = sft_from_base(
            run.base_dir, "pretrain.py", pairs, epochs=epochs, batch_size=cfg.sft_batch_size, lr=cfg.sft_lr,
            micro_batch_size=cfg.sft_micro_batch_size, activation_checkpointing=cfg.activation_checkpointing,
            seed=run.args.seed, device=run.device, desc=desc)
    return model, losses


def sample_texts(run: R1Run, model, problems, k: int, chat: bool, temperature: float = 0.8) -> list[list[str]]:
    """k sampled completions per problem (top-p 0.95), striped across ranks."""
    samples = sample_striped(model, run.tokenizer, problems, k, temperature=temperature, top_p=0.95,
                             max_new_tokens=run.cfg.max_new_tokens, seed=run.rng.randrange(2 ** 31), chat=chat)
    return [s.completions for s in samples]


def evaluate(run: R1Run, model, chat: bool = True) -> dict:
    """The dev-split check of a stage's model (stage.dev_check), English and Chinese prompts separately."""
    return dev_check(model, run.tokenizer, run.eval_sets, k=run.cfg.eval_k, max_new_tokens=run.cfg.max_new_tokens,
                     chat=chat)


def r1_meta(run: R1Run, stage: str, parent: str, metrics: dict, step: int = 0, done: bool = True) -> dict:
    return stage_meta(f"r1/{stage}", run.args, run.cfg, parent=parent, step=step, done=done, metrics=metrics,
                      suite=run.suite_name)


def unfinished_state(run: R1Run, stage: str) -> dict | None:
    """The train_state of this stage, when a run of it was killed mid-way (a finished one has none to resume)."""
    return None if is_done(run.out / stage) else load_train_state(run.out / stage)


def load_stage(run: R1Run, stage: str):
    """The finished checkpoint of an earlier stage (one stopped mid-way would pass for it otherwise)."""
    if (run.out / stage / "meta.json").exists() and not is_done(run.out / stage):
        raise SystemExit(f"{run.out / stage} holds an unfinished {stage} run: rerun train_r1.py to finish it")
    return load_checkpoint(run.out / stage, run.device, expect_stage=f"r1/{stage}",
                           made_by=f"train_r1.py --stage {stage}")[0]


def save_stage(run: R1Run, stage: str, model, parent: str, metrics: dict) -> None:
    """The finished stage's checkpoint, and the random states the next stage starts from."""
    report_replicas_in_sync(model, f"[{stage}] ")
    save_checkpoint(run.out / stage, model, run.tokenizer, r1_meta(run, stage, parent, metrics))
    if run.rank == 0:
        (run.out / stage / "train_state.pt").unlink(missing_ok=True)  # what resumed a GRPO stage, now finished
        atomic_save({"after": stage, **save_rngs(run.rng, run.sampler)}, run.out / "train_state.pt")
    if run.world > 1:
        dist.barrier()  # the next stage loads this checkpoint on every rank
    run.logger.log({"stage": stage, **metrics})
    print0(f"[{stage}] " + " ".join(f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    run_script(main)
