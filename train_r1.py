"""DeepSeek-R1: the four-stage pipeline (DeepSeek-R1 §2.3), from the base model and the R1-Zero model.

R1-Zero reasons but mixes languages and reads badly. R1 fixes that in four stages, each reading the
previous checkpoint and writing its own under out/r1/:

1. cold_start: sample the R1-Zero model on training prompts, keep correct samples written in the prompt's
   language without repetition, rewrite them into the readable chat format (r1mini/data.py: a think block,
   then a summary ending in the answer), top up with worked solutions from tasks.py when too few survive,
   and SFT the *base* model on them (loss on the assistant's tokens only).
2. reasoning_rl: GRPO from the cold-start model; reward = accuracy + format + language consistency (the
   share of the reasoning's words in the prompt's language, §2.3.2).
3. rejection_sft: sample the stage-2 model several times per training prompt; keep correct samples with
   no mixed language, no overlong paragraph, no code block, deduplicated (r1mini/filters.py); add
   non-reasoning chat data at about the paper's 3:1 ratio; SFT the *base* model again, for 2 epochs.
4. final_rl: train a reward model (the SFT model with a scalar head, Bradley-Terry loss on preference
   pairs made by code), then a short GRPO phase on a mix of reasoning prompts (rule rewards + language)
   and general prompts (the reward model's score of the summary for helpful prompts, of the whole reply
   for unsafe ones, plus format: no reasoning block for chat).

Each stage ends with an evaluation on held-out problems, English and Chinese prompts separately (pass@1
over k samples at T=0.6, top-p 0.95, and language consistency), stored in its meta.json; R1-Zero is
evaluated on the same problems first, for comparison. `--stage all` runs the stages not yet done, so an
interrupted pipeline resumes at the stage it was in: a GRPO stage from its last checkpoint (every
--rl_ckpt_every steps, with its optimizer, reward model and random states), an SFT stage from its start with
the random states it began with, so a killed run ends bit for bit where an uninterrupted one ends.
`--stage NAME` (re)runs one.

    python train_r1.py                        # from out/zero (and the base model it was trained from)
    python train_r1.py --preset toy           # seconds
    python train_r1.py --stage final_rl       # rerun one stage
    torchrun --nproc_per_node=2 train_r1.py   # data parallel

Under torchrun every rank draws the same problems from the same seeded RNG and works on its stripe: sampling
(cold start, rejection sampling, evaluation) is striped across ranks and gathered back in order, SFT trains
each rank on its slice of the same global batch (DDP), GRPO gives each rank whole groups of its stripe of
prompts and all-reduces the metrics. The reward model is trained on every rank alike (it is small). Rank 0
logs and saves; the sampled data differ from a one-process run (each rank has its own sampling seed).
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from r1mini.common import (JsonlLogger, atomic_save, autocast, check_replicas_in_sync, load_checkpoint,
                           load_train_state, map_striped, parse_config, pick_device, print0, random_states,
                           save_checkpoint, seed_everything, set_random_states, setup_distributed, step_guard,
                           teardown_distributed)
from r1mini.data import chat_ids, reasoning_reply, write_jsonl
from r1mini.evaluate import heldout_problems, prompt_ids, sample_completions, score
from r1mini.filters import rejection_sampling_data, repeats
from r1mini.general import general_prompts, preference_pairs
from r1mini.grpo import group_advantages, grpo_update, rollout
from r1mini.reward_model import RewardModel, pairwise_accuracy, score_texts, train_reward_model
from r1mini.rewards import (accuracy_reward, language_consistency, parse_completion, reasoning_text,
                            reply_format_reward, zero_reward)
from r1mini.sft import train_sft
from r1mini.tasks import suite

STAGES = ("cold_start", "reasoning_rl", "rejection_sft", "final_rl")
PREVIOUS = dict(zip(STAGES[1:], STAGES))  # the stage each later one follows


@dataclass
class R1Config:
    stage: str = "all"  # all (the stages not done yet), or one of cold_start, reasoning_rl, rejection_sft, final_rl
    base: str = ""  # base checkpoint; "" means the R1-Zero checkpoint's parent
    suite: str = ""  # "" means the base model's
    zh_share: float = 0.4  # share of prompts asked in Chinese
    # stage 1: cold start
    cold_prompts: int = 300
    cold_samples: int = 4
    cold_examples: int = 1200  # topped up with worked solutions to this many
    sft_epochs: int = 2
    sft_batch_size: int = 32
    sft_lr: float = 1e-3
    sft_micro_batch_size: int = 0  # > 0: gradient accumulation over micro-batches of this many rows per rank
    rl_micro_batch_size: int = 0  # the same for the GRPO updates
    # stage 2 and 4: GRPO
    rl_steps: int = 25
    final_steps: int = 15
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 160  # the longest English multiplication reply with its summary is ~130 tokens
    rl_lr: float = 5e-5  # lower than R1-Zero's: these policies start sharp, and a large step undoes the SFT
    lang_weight: float = 1.0  # weight of the language-consistency reward
    rl_ckpt_every: int = 10  # a GRPO stage saves a checkpoint to resume from every this many steps
    general_share: float = 0.25  # share of general prompts in the final RL stage
    # stage 3: rejection sampling
    rs_prompts: int = 2000  # many prompts, few samples each: the samples of one prompt are often identical
    rs_samples: int = 2
    reasoning_ratio: float = 3.0  # reasoning : non-reasoning examples
    # stage 4: reward model
    rm_pairs: int = 2000
    rm_steps: int = 200
    rm_batch_size: int = 32
    rm_lr: float = 5e-4
    # evaluation
    eval_problems: int = 25  # held-out problems per task and language
    eval_k: int = 4


PRESETS = {
    "toy": dict(cold_prompts=4, cold_samples=2, cold_examples=24, sft_epochs=1, sft_batch_size=8, rl_steps=2,
                final_steps=2, rl_ckpt_every=1, prompts_per_step=2, group_size=2, max_new_tokens=24, rs_prompts=4,
                rs_samples=2, rm_pairs=40, rm_steps=3, rm_batch_size=8, eval_problems=2, eval_k=2),
    "cpu": dict(),
    "gpu": dict(cold_prompts=2000, cold_samples=4, cold_examples=8000, sft_batch_size=64, rl_steps=300,
                final_steps=100, prompts_per_step=32, group_size=16, max_new_tokens=384, rl_lr=1e-4, rl_ckpt_every=50,
                rs_prompts=2000, rm_pairs=10000, rm_steps=600, rm_batch_size=64, eval_problems=100, eval_k=16),
}


def main(argv=None):
    cfg, args = parse_config(R1Config, PRESETS, __doc__, argv, default_init="out/zero", default_out="out/r1")
    if cfg.stage != "all" and cfg.stage not in STAGES:
        raise SystemExit(f"--stage must be all or one of {', '.join(STAGES)}, got {cfg.stage!r}")
    device = pick_device(args.device)
    rank, world = setup_distributed(device)
    if cfg.prompts_per_step % world:
        raise SystemExit(f"--prompts_per_step {cfg.prompts_per_step} must divide by the {world} ranks")
    seed_everything(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logger = JsonlLogger(out / "log.jsonl")
    _, tokenizer, zero_meta = load_checkpoint(args.init, "cpu", expect_stage="zero")
    base_dir = cfg.base or zero_meta.get("parent") or "out/base"
    suite_name = cfg.suite or zero_meta.get("config", {}).get("suite") or args.preset
    tasks = suite(suite_name)
    task_list = list(tasks.values())
    end_id = tokenizer.special("<|end|>")
    stop = [end_id, tokenizer.eot_id]
    rng = random.Random(args.seed)  # the same on every rank: all ranks draw the same problems
    gen = torch.Generator(device=device).manual_seed(args.seed + rank)  # ...but sample their own completions
    eval_sets = {lang: heldout_problems(tasks, cfg.eval_problems, seed=args.seed, lang=lang) for lang in ("en", "zh")}

    def draw_problems(n: int):
        return [rng.choice(task_list).sample(rng, "train", "zh" if rng.random() < cfg.zh_share else "en")
                for _ in range(n)]

    def evaluate(model, chat: bool = True) -> dict:
        """Held-out pass@1 and language consistency, English and Chinese prompts separately."""
        result = {}
        for lang, problems in eval_sets.items():
            samples = map_striped(lambda ps: sample_completions(model, tokenizer, ps, cfg.eval_k, temperature=0.6,
                                                                top_p=0.95, max_new_tokens=cfg.max_new_tokens,
                                                                seed=1234 + rank, chat=chat), problems)
            r = score(samples, cfg.eval_k, chat=chat)
            result.update({f"pass@1/{lang}": round(r["pass@1"], 4), f"lang/{lang}": round(r["lang_consistency"], 4),
                           f"format/{lang}": round(r["format"], 4)})
        return result

    def meta(stage: str, parent: str, metrics: dict, step: int = 0, done: bool = True) -> dict:
        return {"stage": f"r1/{stage}", "parent": parent, "step": step, "done": done, "preset": args.preset,
                "seed": args.seed, "config": {**dataclasses.asdict(cfg), "suite": suite_name}, "metrics": metrics}

    def stage_done(stage: str) -> bool:
        f = out / stage / "meta.json"
        return f.exists() and json.loads(f.read_text()).get("done", False)

    def load_stage(stage: str):
        """The finished checkpoint of an earlier stage (one stopped mid-way would pass for it otherwise)."""
        if (out / stage / "meta.json").exists() and not stage_done(stage):
            raise SystemExit(f"{out / stage} holds an unfinished {stage} run: rerun train_r1.py to finish it")
        return load_checkpoint(out / stage, device, expect_stage=f"r1/{stage}")[0]

    def save(stage: str, model, parent: str, metrics: dict):
        print0(f"[{stage}] replicas in sync: parameter checksum {check_replicas_in_sync(model)!r} on {world} rank(s)")
        save_checkpoint(out / stage, model, tokenizer, meta(stage, parent, metrics))
        if rank == 0:
            (out / stage / "train_state.pt").unlink(missing_ok=True)  # what resumed a GRPO stage, now finished
            # the random states the next stage starts from
            atomic_save({"after": stage, **random_states(rng, gen)}, out / "train_state.pt")
        if world > 1:
            dist.barrier()  # the next stage loads this checkpoint on every rank
        logger.log({"stage": stage, **metrics})
        print0(f"[{stage}] " + " ".join(f"{k}={v}" for k, v in metrics.items()))

    def sample_texts(model, problems, k: int, chat: bool, temperature: float = 0.8) -> list[list[str]]:
        seed = rng.randrange(2 ** 31) + rank
        return map_striped(lambda ps: [s.completions for s in sample_completions(
            model, tokenizer, ps, k, temperature=temperature, top_p=0.95, max_new_tokens=cfg.max_new_tokens,
            seed=seed, chat=chat)], problems)

    def to_examples(pairs: list[tuple[str, str]]):
        return [chat_ids(tokenizer, user, reply) for user, reply in pairs]

    def sft_from_base(pairs: list[tuple[str, str]], epochs: int, desc: str):
        model, _, _ = load_checkpoint(base_dir, device, expect_stage="base")
        with step_guard("the SFT stage", out, "--sft_lr", "--sft_batch_size (or set --sft_micro_batch_size)"):
            losses = train_sft(model, to_examples(pairs), epochs=epochs, batch_size=cfg.sft_batch_size, lr=cfg.sft_lr,
                               pad_id=end_id, seed=args.seed, micro_batch_size=cfg.sft_micro_batch_size, desc=desc)
        return model, losses

    def grpo(model, steps: int, stage: str, general: bool):
        """GRPO with R1's rewards: accuracy + format + language consistency on reasoning prompts; with
        `general`, a share of general prompts scored by the reward model."""
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.rl_lr, weight_decay=0.0, betas=(0.9, 0.99))
        rm = None
        metrics = {}
        parent = str(out / PREVIOUS[stage])
        state = None if stage_done(stage) else load_train_state(out / stage)  # this stage, killed mid-way
        if general:
            rm = RewardModel.from_policy(model).to(device)
            if state is not None:
                rm.load_state_dict(state["reward_model"])
                metrics = state["metrics"]
            else:
                pairs_train = preference_pairs(cfg.rm_pairs, seed=args.seed, split="train")
                pairs_test = preference_pairs(max(50, cfg.rm_pairs // 5), seed=args.seed + 1, split="test")
                rm_losses = train_reward_model(rm, tokenizer, pairs_train, steps=cfg.rm_steps,
                                               batch_size=cfg.rm_batch_size, lr=cfg.rm_lr, device=device, seed=args.seed)
                metrics["rm_loss"] = round(sum(rm_losses[-10:]) / len(rm_losses[-10:]), 4)
                metrics["rm_accuracy"] = round(pairwise_accuracy(rm, tokenizer, pairs_test, device), 4)
                for kind in sorted({p["kind"] for p in pairs_test}):
                    subset = [p for p in pairs_test if p["kind"] == kind]
                    metrics[f"rm_accuracy/{kind}"] = round(pairwise_accuracy(rm, tokenizer, subset, device), 4)
            rm.eval().requires_grad_(False)
            general_pool = general_prompts(max(200, steps * cfg.prompts_per_step), seed=args.seed, split="train")
        step = 0
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            set_random_states(state, rng, gen)
            step = state["step"]
            print0(f"resuming {out / stage} from step {step}")
        logger.drop_after(step, stage=stage)  # rows of steps that run again (all of them on a fresh start)

        def checkpoint():
            save_checkpoint(out / stage, model, tokenizer, meta(stage, parent, metrics, step, done=False),
                            {"optimizer": optimizer.state_dict(), "step": step, "metrics": metrics,
                             **random_states(rng, gen),
                             **({"reward_model": rm.state_dict()} if rm is not None else {})})

        ddp_model = None
        if world > 1:
            ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        bar = tqdm(total=steps, initial=step, desc=stage, dynamic_ncols=True, leave=False, disable=rank != 0)
        while step < steps:
            t0 = time.time()
            n_general = round(cfg.prompts_per_step * cfg.general_share) if general else 0
            problems = draw_problems(cfg.prompts_per_step - n_general)
            generals = [rng.choice(general_pool) for _ in range(n_general)]
            # every rank drew the same prompts; it keeps its stripe (whole groups stay on one rank)
            mine = range(rank, cfg.prompts_per_step, world)
            problems, generals = [problems[i] for i in mine if i < len(problems)], \
                                 [generals[i - len(problems)] for i in mine if i >= len(problems)]
            prompts = [prompt_ids(tokenizer, p.question, True)[0] for p in problems] + \
                      [chat_ids(tokenizer, g["user"])[0] for g in generals]
            model.eval()
            with autocast(device):
                ro = rollout(model, tokenizer, prompts, cfg.group_size, max_new_tokens=cfg.max_new_tokens, stop_ids=stop,
                             generator=gen)
            model.train()
            G = cfg.group_size
            rewards, acc, lang = [], [], []
            for i, c in enumerate(ro.completions[:len(problems) * G]):
                p = problems[i // G]
                a, f = accuracy_reward(c, p), reply_format_reward(c)
                lc = language_consistency(reasoning_text(c), p.lang)
                rewards.append(a + f + cfg.lang_weight * lc)
                acc.append(a)
                lang.append(lc)
            if generals:
                replies = ro.completions[len(problems) * G:]
                gprompts = [generals[i // G] for i in range(len(replies))]
                # helpfulness judges the summary only (after any think block); harmlessness the whole reply
                # (stripped: the reward model was trained on replies without the leading space)
                judged = [(r.split("</think>")[-1] if g["kind"] == "helpful" else r).strip() for r, g in zip(replies, gprompts)]
                with torch.no_grad(), autocast(device):
                    rm_scores = score_texts(rm, tokenizer, [g["user"] for g in gprompts], judged, device).float().tolist()
                fmt = [float("<think>" not in r and "<answer>" not in r and len(r.strip()) > 0) for r in replies]
                rewards += [s + f for s, f in zip(rm_scores, fmt)]
            rewards_t = torch.tensor(rewards, device=device, dtype=torch.float32)
            advantages = group_advantages(rewards_t, G)
            t_gen = time.time() - t0
            with step_guard(f"{stage} step {step + 1}", out, "--rl_lr",
                            "--group_size, --prompts_per_step or --max_new_tokens (or set --rl_micro_batch_size)"):
                upd = grpo_update(model, optimizer, ro, advantages, torch.ones_like(rewards_t, dtype=torch.bool),
                                  max_len=cfg.max_new_tokens, autocast_ctx=lambda: autocast(device), ddp_model=ddp_model,
                                  micro_batch_size=cfg.rl_micro_batch_size)
            sums = torch.tensor([sum(rewards), len(rewards), sum(acc), len(acc), sum(lang), sum(ro.lengths),
                                 *(upd[k] / world for k in ("kl", "clip_frac", "entropy"))], dtype=torch.float64)
            if world > 1:
                sums = sums.to(device)
                dist.all_reduce(sums)  # sums and counts over all ranks, then the means
            r_sum, n, a_sum, n_acc, l_sum, len_sum, kl, clip_frac, entropy = sums.tolist()
            step += 1
            bar.update(1)
            row = {"stage": stage, "step": step, "reward": round(r_sum / n, 4),
                   "accuracy": round(a_sum / max(1, n_acc), 4), "lang_consistency": round(l_sum / max(1, n_acc), 4),
                   "length": round(len_sum / n, 2), "t_gen": round(t_gen, 2),
                   "t_train": round(time.time() - t0 - t_gen, 2), "kl": round(kl, 4), "clip_frac": round(clip_frac, 4),
                   "entropy": round(entropy, 4)}
            logger.log(row)
            if step % cfg.rl_ckpt_every == 0 and step < steps:
                checkpoint()
        bar.close()
        return metrics

    todo = [s for s in STAGES if not stage_done(s)] if cfg.stage == "all" else [cfg.stage]
    if cfg.stage == "all" and not (out / "zero_eval.json").exists():
        zero_model, _, _ = load_checkpoint(args.init, device, expect_stage="zero")
        zero_eval = evaluate(zero_model, chat=False)
        if rank == 0:
            (out / "zero_eval.json").write_text(json.dumps(zero_eval, indent=2))
        print0("[r1-zero] " + " ".join(f"{k}={v}" for k, v in zero_eval.items()))
    print0(f"R1 from {args.init} (base {base_dir}), suite {suite_name}: stages {', '.join(todo) or 'none left'}")
    # the random states after the last finished stage: a pipeline stopped between stages or in an SFT stage goes
    # on exactly as it would have without the stop (one stopped in a GRPO stage: see grpo)
    saved = load_train_state(out)
    if cfg.stage == "all" and todo and saved and saved["after"] == PREVIOUS.get(todo[0]):
        set_random_states(saved, rng, gen)

    for stage in todo:
        t_stage = time.time()
        if stage == "cold_start":
            # -- R1-Zero samples -> readable chat examples, topped up with worked solutions -------------------
            zero_model, _, _ = load_checkpoint(args.init, device, expect_stage="zero")
            problems = draw_problems(cfg.cold_prompts)
            pairs, seen = [], set()
            for p, comps in zip(problems, sample_texts(zero_model, problems, cfg.cold_samples, chat=False)):
                for c in comps:
                    parsed = parse_completion(c)
                    if parsed is None or zero_reward(c, p)[0] == 0:
                        continue
                    think, answer = parsed
                    if language_consistency(think, p.lang) < 1.0 or repeats(think) or (p.question, think) in seen:
                        continue
                    seen.add((p.question, think))
                    pairs.append((p.question, reasoning_reply(think, answer, p.lang)))
            from_zero = len(pairs)
            pairs = pairs[:cfg.cold_examples]
            for p in draw_problems(max(0, cfg.cold_examples - len(pairs))):
                think, answer = tasks[p.task].solution(p, "steps", p.lang, rng)
                pairs.append((p.question, reasoning_reply(think, answer, p.lang)))
            if rank == 0:
                write_jsonl(out / "cold_start_data.jsonl", [{"user": u, "assistant": a} for u, a in pairs])
            model, losses = sft_from_base(pairs, cfg.sft_epochs, "cold start SFT")
            save(stage, model, base_dir, {"from_zero": from_zero, "from_tasks": len(pairs) - min(from_zero, cfg.cold_examples),
                                          "zero_samples": cfg.cold_prompts * cfg.cold_samples,
                                          "sft_loss": round(losses[-1], 4), **evaluate(model),
                                          "seconds": round(time.time() - t_stage, 1)})
        elif stage == "reasoning_rl":
            model = load_stage("cold_start")
            grpo(model, cfg.rl_steps, stage, general=False)
            save(stage, model, str(out / "cold_start"), {**evaluate(model), "seconds": round(time.time() - t_stage, 1)})
        elif stage == "rejection_sft":
            # -- sample, filter, add non-reasoning data, SFT the base model --------------------------------------
            model = load_stage("reasoning_rl")
            problems = draw_problems(cfg.rs_prompts)
            sampled = zip(problems, sample_texts(model, problems, cfg.rs_samples, chat=True))
            rows, counts = rejection_sampling_data(sampled, cfg.reasoning_ratio, seed=args.seed)
            if rank == 0:
                write_jsonl(out / "rejection_sft_data.jsonl", rows)
            model, losses = sft_from_base([(r["user"], r["assistant"]) for r in rows], 2, "rejection SFT")
            keep_rates = {f"filter/{k}": v for k, v in counts.items()}
            save(stage, model, str(out / "reasoning_rl"), {**keep_rates, "non_reasoning": len(rows) - counts["kept"],
                                                           "sft_loss": round(losses[-1], 4), **evaluate(model),
                                                           "seconds": round(time.time() - t_stage, 1)})
        else:
            model = load_stage("rejection_sft")
            rm_metrics = grpo(model, cfg.final_steps, stage, general=True)
            save(stage, model, str(out / "rejection_sft"), {**rm_metrics, **evaluate(model),
                                                            "seconds": round(time.time() - t_stage, 1)})

    teardown_distributed()


if __name__ == "__main__":
    main()
