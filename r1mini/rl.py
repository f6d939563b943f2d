"""The RL engine: one GRPO step that R1-Zero (train_zero.py) and both RL stages of R1 (train_r1.py) share.

    prompts -> rollout (G samples per prompt) -> rewards -> group advantages -> update -> metrics

A stage brings its prompts, what each prompt asks (a Problem, or a general chat prompt), its reward
function (r1mini/rewards.py) and what else it wants measured of each reply; everything else, every option of
GRPOConfig included, is the same in every stage. The math (advantages, the loss, log-probs) is r1mini/grpo.py.

Start reading at `plain_update`: one GRPO update as the paper writes it, the whole batch in one forward on one
process. `grpo_update` is the same update for batches that do not fit (micro-batches, chunks cut by length),
for several passes over one rollout (mu, minibatches), for dynamic sampling and for DDP, and
tests/test_rl.py holds its gradients to plain_update's.

Under torchrun each rank works on its own prompts, whole groups on one rank (a group's advantages need all of
its rewards), DDP averages the gradients, and the metrics are summed over ranks before they are averaged.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from r1mini.checkpoint import resume
from r1mini.config import NON_NEGATIVE, POSITIVE, TOP_P, ConfigError, import_named, importable, one_of, validate
from r1mini.device import autocast, throughput
from r1mini.distributed import (accumulate, length_chunks, print0, rank_and_world, sum_over_ranks,
                                training_forward)
from r1mini.grpo import (AGGREGATIONS, Aggregation, aggregation_count, entropy_from_logits, group_advantages, grpo_loss,
                         logprobs_from_logits)
from r1mini.memory import micro_batch
from r1mini.optim import apply_update
from r1mini.sampling import generate


RATIO_DEV_WARN = 1e-3  # the first update is on-policy: a mean |rho - 1| above this is numerical noise


@dataclass
class GRPOConfig:
    """The options of every GRPO stage (the papers' defaults unless said otherwise; see r1mini/grpo.py)."""
    prompts_per_step: int = 8  # all ranks together
    group_size: int = 8  # G completions per prompt
    max_new_tokens: int = 224  # the longest completion, in tokens (a longer one is cut off); with the prompt, 256
    temperature: float = 1.0  # of the rollouts
    top_p: float = 1.0  # nucleus sampling of the rollouts; 1.0 samples the whole distribution
    lr: float = 1e-4  # 3e-4 collapsed one cpu R1-Zero run to accuracy 0 within 25 steps; 1e-4 climbed steadily
    weight_decay: float = 0.0  # AdamW's
    grad_clip: float = 1.0  # the gradient's global norm is clipped to this
    mu: int = 1  # updates per rollout batch
    minibatches: int = 1  # slices of the rollout batch per update
    micro_batch_size: int = 0  # rows per update chunk (memory); 0: what fits the device (all rows on the CPU)
    clip_eps: float = 0.2  # the ratio is clipped to [1 - clip_eps, 1 + clip_eps_high] (R1 eq. 1)
    clip_eps_high: float = 0.2  # > clip_eps: clip-higher (DAPO uses 0.28)
    kl_coef: float = 0.0  # beta; > 0 keeps a frozen reference model
    ref_reset_every: int = 50  # steps between reference resets (the paper: every 400)
    agg: str = "seq-mean"  # seq-mean (GRPO), token-mean (DAPO), constant (Dr. GRPO), or module:name (your own)
    scale: str = "std"  # std (GRPO) or none (Dr. GRPO)
    drop_uniform_groups: bool = False  # dynamic sampling (DAPO): no update on groups whose rewards are all equal
    compile: bool = False  # torch.compile the training forward (dynamic shapes: rollout lengths vary)
    reward: str = ""  # "": the stage's rule rewards, as the paper; module:function for your own (docs/extending.md)
    activation_checkpointing: bool = False  # recompute each block in backward: less memory (0.5B+), ~1/3 more compute
    speculative: bool = False  # roll out by speculative decoding with the MTP draft (an MTP base; same samples' law)

    RULES: ClassVar[dict] = {"top_p": TOP_P, "lr": POSITIVE, "grad_clip": POSITIVE, "micro_batch_size": NON_NEGATIVE,
                             "agg": (lambda v: v in AGGREGATIONS or importable(v),
                                     "one of " + ", ".join(map(repr, AGGREGATIONS)) + ", or module:name"),
                             "scale": one_of("std", "none"),
                             "reward": (lambda v: v == "" or importable(v), "'' or module:function")}

    def __post_init__(self):
        validate(self)
        self.aggregation()  # your own aggregation is imported here: a wrong name fails where the config is made

    def aggregation(self) -> Aggregation:
        """The Aggregation that `agg` names: a built-in one of grpo.AGGREGATIONS, or your own as module:name
        (docs/extending.md), imported, not added to the table."""
        if self.agg in AGGREGATIONS:
            return AGGREGATIONS[self.agg]
        aggregation = import_named(self.agg, "agg")
        if not isinstance(aggregation, Aggregation):
            got = type(aggregation).__name__
            raise ConfigError("agg", f"{self.agg}: must name an r1mini.grpo.Aggregation, got {got}")
        return aggregation

    def prompts_per_rank(self, world: int) -> int:
        """Each rank's share of prompts_per_step under torchrun (whole groups stay on one rank)."""
        if self.prompts_per_step % world:
            raise ConfigError("prompts_per_step", f"{self.prompts_per_step} must divide by the {world} ranks")
        return self.prompts_per_step // world


@dataclass
class Rollout:
    ids: torch.Tensor  # (B, T) prompt + completion, right-padded, B = n_prompts * group_size
    mask: torch.Tensor  # (B, T-1) True where the *target* token ids[:, j+1] belongs to a completion
    completions: list[str]  # decoded completions, stop tokens removed
    lengths: list[int]  # completion lengths in tokens


@dataclass
class Policy:
    """The model GRPO trains and what its updates need."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    forward: torch.nn.Module  # what the training forward runs through: model, compiled and/or DDP-wrapped
    ref_model: torch.nn.Module | None = None  # pi_ref of the KL term, when kl_coef > 0

    def train_state(self) -> dict:
        """What a resume needs besides the weights: the optimizer and the reference policy."""
        state = {"optimizer": self.optimizer.state_dict()}
        if self.ref_model is not None:
            state["ref_model"] = self.ref_model.state_dict()
        return state


def make_policy(model: torch.nn.Module, cfg: GRPOConfig, device: torch.device) -> Policy:
    """AdamW, a frozen copy of the model as the reference when kl_coef > 0, the training forward."""
    # beta2 0.99 where every other stage uses 0.95: the second moment averages over ~100 updates instead of ~20,
    # so one batch of noisy policy gradients (a few groups, many of them all right or all wrong) moves the
    # per-weight step size less. The first R1-Zero loop chose it and every measured run since has used it;
    # 0.95 was never compared here.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    model.checkpoint_blocks = cfg.activation_checkpointing
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
    model.mtp.requires_grad_(False)  # MTP drafts are trained in pretraining only; frozen, DDP waits for no grads
    forward = training_forward(model, device, compile=cfg.compile, dynamic=True)  # generation stays eager
    return Policy(model, optimizer, forward, ref_model)


def resume_policy(policy: Policy, state: dict, out, lr: float) -> int:
    """Load a GRPO run's train_state (weights, optimizer, reference policy) into policy; returns its step."""
    step = resume(state, policy.model, policy.optimizer, out, lr=lr)
    if policy.ref_model is not None:  # the policy of the last reset, not the current one
        policy.ref_model.load_state_dict(state.get("ref_model", state["model"]))
    return step


@torch.no_grad()
def rollout(model, tokenizer, prompt_ids: list[list[int]], group_size: int, *, max_new_tokens: int,
            stop_ids: list[int], temperature: float = 1.0, top_p: float = 1.0,
            generator: torch.Generator | None = None, draft_stats: dict | None = None) -> Rollout:
    """Sample group_size completions for every prompt with the KV cache (groups contiguous). With
    draft_stats (a dict), by speculative decoding with the MTP draft, counting drafts proposed and accepted
    in it."""
    device = next(model.parameters()).device
    prompts = [p for p in prompt_ids for _ in range(group_size)]
    pad = stop_ids[0]
    new = generate(model, prompts, max_new_tokens, temperature=temperature, top_p=top_p, stop_ids=stop_ids,
                   pad_id=pad, generator=generator, speculative=draft_stats is not None, stats=draft_stats)
    T = max(len(p) + len(c) for p, c in zip(prompts, new))
    ids = torch.full((len(new), T), pad, dtype=torch.long)
    mask = torch.zeros(len(new), T - 1, dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompts, new)):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        mask[i, len(p) - 1:len(p) + len(c) - 1] = True  # targets at positions len(p) .. len(p)+len(c)-1
    completions = [tokenizer.decode([t for t in c if t not in stop_ids]) for c in new]
    return Rollout(ids.to(device), mask.to(device), completions, [len(c) for c in new])


def grpo_step(policy: Policy, tokenizer, prompts: list[list[int]], items: list, reward_fn, cfg: GRPOConfig, *,
              step: int, stop_ids: list[int], generator: torch.Generator, stage: str = "",
              reply_metrics=None) -> dict:
    """One GRPO step on this rank's prompts (token ids; `items[i]` is what prompts[i] asks, handed to
    reward_fn(completions, items) -> (rewards, parts) once per completion). Returns the step's metrics,
    averaged over all ranks: the rewards and their parts, lengths, the update's diagnostics, timings, and what
    reply_metrics(completions, parts) -> {name: values} measures for the stage (R1's reflection and
    step-by-step shares: stage.reply_metrics). `step` counts the steps done before this one; `stage` names it
    in warnings. A NaN loss (FloatingPointError) or CUDA running out of memory is raised as it comes: the
    script's step_guard turns it into what to do (r1mini/stage.py)."""
    model, device = policy.model, next(policy.model.parameters()).device
    where = f"{stage} step {step + 1}".strip()
    if policy.ref_model is not None and step % cfg.ref_reset_every == 0:
        policy.ref_model.load_state_dict(model.state_dict())  # reset the reference to the current policy

    # -- rollout: G samples per prompt, rewards, group advantages ----------------------------------------------
    t0 = time.time()
    model.eval()
    draft_stats = {} if cfg.speculative else None
    with autocast(device):
        ro = rollout(model, tokenizer, prompts, cfg.group_size, max_new_tokens=cfg.max_new_tokens,
                     stop_ids=stop_ids, temperature=cfg.temperature, top_p=cfg.top_p, generator=generator,
                     draft_stats=draft_stats)
    model.train()
    rewards, parts = reward_fn(ro.completions, [item for item in items for _ in range(cfg.group_size)])
    rewards = torch.tensor(rewards, device=device, dtype=torch.float32)
    advantages = group_advantages(rewards, cfg.group_size, cfg.scale)  # A_i = (r_i - mean) / std, eq. 3
    grouped = rewards.view(-1, cfg.group_size)
    mixed = grouped.max(1).values != grouped.min(1).values  # groups whose samples differ: the signal
    keep = mixed.repeat_interleave(cfg.group_size) if cfg.drop_uniform_groups \
        else torch.ones_like(rewards, dtype=torch.bool)
    t_gen = time.time() - t0

    # -- update: mu passes over the batch, in minibatches -------------------------------------------------------
    t0 = time.time()
    update = grpo_update(policy, ro, advantages, keep, cfg)
    t_train = time.time() - t0
    measured = reply_metrics(ro.completions, parts) if reply_metrics else {}
    metrics = step_metrics(ro, rewards, parts, mixed, update, t_gen, t_train, cfg, model, measured)
    if draft_stats:  # this rank's share of MTP drafts the model accepted
        metrics["draft_acceptance"] = round(draft_stats["accepted"] / max(1, draft_stats["drafted"]), 4)
    if metrics["ratio_dev"] > RATIO_DEV_WARN:
        print0(f"warning: at {where} the first update's |ratio - 1| is {metrics['ratio_dev']:.2g} although it is "
               f"on-policy: the old log-probs and the update's disagree numerically (mixed precision?), which "
               f"biases clipping and the KL")
    return metrics


def plain_update(model, optimizer, ro: Rollout, advantages: torch.Tensor, cfg: GRPOConfig,
                 ref_model=None) -> dict:
    """One GRPO update (R1 eq. 1-3) on one process, the whole rollout in one forward: what grpo_update computes,
    written to be read. On-policy, as R1 ran it (mu = minibatches = 1): pi_old is the policy before this very
    update, so the ratio is 1 in value and its gradient is that of log pi_theta. Returns grpo_loss's stats."""
    logits = model(ro.ids)[:, :-1]  # position t predicts token t + 1
    logp = logprobs_from_logits(logits, ro.ids[:, 1:])  # log pi_theta(o_t | q, o_<t), (B, T-1)
    old_logp = logp.detach()  # log pi_old: the same numbers, no gradient
    ref_logp = None
    if ref_model is not None:  # the KL term's pi_ref (kl_coef > 0)
        with torch.no_grad():
            ref_logp = logprobs_from_logits(ref_model(ro.ids)[:, :-1], ro.ids[:, 1:])
    loss, stats = grpo_loss(logp, old_logp, ref_logp, advantages, ro.mask, clip_eps=cfg.clip_eps,
                            clip_eps_high=cfg.clip_eps_high, kl_coef=cfg.kl_coef, agg=cfg.aggregation(),
                            max_len=cfg.max_new_tokens)  # -J, the surrogate's aggregate minus beta KL
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return stats


def grpo_update(policy: Policy, ro: Rollout, advantages: torch.Tensor, keep: torch.Tensor, cfg: GRPOConfig) -> dict:
    """plain_update, for every case a run meets: cfg.mu passes of GRPO updates over the kept rows of a rollout,
    each pass in cfg.minibatches slices; returns the mean kl, clip_frac and entropy, and ratio_dev, the mean
    |rho - 1| of the first update (None for what this rank has no rows for).

    Old log-probs are taken once, before the first update, through the same forward as the updates (eager,
    compiled or DDP) and in the same chunks: on-policy, rho must be exactly 1, and it is 1 only if both
    sides ran the same kernels on the same shapes.
    With mu = minibatches = 1 the single update is on-policy by construction (old = current) and the extra
    pass is skipped. The first update is always on-policy, so its ratio_dev measures numerical noise alone.

    Under torchrun every rank runs the same updates and, in each, at least one forward and backward through
    DDP (each rank's last backward waits for the others'), whatever rows it kept: dynamic sampling can leave
    a rank none, and then it takes part with a pass of weight 0. A row's weight is its share of what the
    aggregation divides by over *all* ranks, so the update is the global batch's, as in one process.
    """
    world, device = rank_and_world()[1], ro.ids.device
    idx = keep.nonzero().squeeze(1)
    ids, mask, adv = ro.ids[idx], ro.mask[idx], advantages[idx]
    slices = torch.arange(len(idx), device=device).tensor_split(cfg.minibatches)
    agg = cfg.aggregation()
    counts = sum_over_ranks([float(aggregation_count(mask[rows], agg, cfg.max_new_tokens)) for rows in slices]
                            + [len(rows) for rows in slices], device)  # one collective for the whole update
    totals, sizes = counts[:len(slices)], counts[len(slices):]
    # micro-batches: --micro_batch_size, else what fits the device's memory (all rows on the CPU)
    longest = max(len(rows) for rows in slices)
    micro = micro_batch(policy.model, "train", longest, ids.size(1), cfg.micro_batch_size,
                        ref_model=policy.ref_model is not None)
    old_logp = ref_logp = None
    if cfg.mu * cfg.minibatches > 1:
        old_logp = _old_logprobs(policy.forward, ids, mask, slices, micro)
    if policy.ref_model is not None:  # no-grad forwards, in chunks as large as fit
        score_micro = micro_batch(policy.model, "score", len(idx), ids.size(1), cfg.micro_batch_size,
                                  optimizer_state=True, ref_model=True)
        ref_logp = _logprobs(policy.ref_model, ids, score_micro)
    stats, entropies = [], []
    for _ in range(cfg.mu):
        for rows, total, size in zip(slices, totals, sizes):
            if size == 0:  # no rank has a row here: no update anywhere
                continue
            if len(rows) == 0:
                _idle_update(policy, ro.ids[:1], cfg)
                continue
            stats.append(_minibatch_update(policy, ids, mask, adv, old_logp, ref_logp, rows, max(1.0, total), world,
                                           micro, cfg, entropies))
    if not stats:
        return {"kl": None, "clip_frac": None, "entropy": None, "ratio_dev": None}
    mean = lambda key: sum(s[key] for s in stats) / len(stats)  # noqa: E731
    return {"kl": mean("kl"), "clip_frac": mean("clip_frac"), "entropy": sum(entropies) / max(1, len(entropies)),
            "ratio_dev": stats[0]["ratio_dev"]}


@torch.no_grad()
def _logprobs(forward: torch.nn.Module, ids: torch.Tensor, micro_batch_size: int) -> torch.Tensor:
    """log pi(ids[:, j+1] | ids[:, :j+1]) of every row, (B, T-1), in the update's micro-batches (memory)."""
    if len(ids) == 0:  # this rank kept no row
        return torch.zeros(0, ids.size(1) - 1, device=ids.device)
    with autocast(ids.device):
        parts = [logprobs_from_logits(forward(c)[:, :-1], c[:, 1:]) for c in ids.split(micro_batch_size or len(ids))]
    return torch.cat(parts)


@torch.no_grad()
def _old_logprobs(forward: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, slices: list[torch.Tensor],
                  micro: int) -> torch.Tensor:
    """log pi_old of every row, (B, T-1), taken in exactly the chunks (rows and widths) that each minibatch's
    update runs (_update_chunks): the first update then computes its log-probs with the same kernels on the
    same inputs, and rho is exactly 1. (Kernels are chosen by shape: full-width batches differed from the
    update's chunks in the last bits, 3e-7 in ratio_dev under bf16.) Columns past a chunk's width stay 0: no
    target there."""
    old = torch.zeros(ids.size(0), ids.size(1) - 1, device=ids.device)
    for rows in (rows for rows in slices if len(rows)):  # this rank may have kept no row of a minibatch
        for c, width in _update_chunks(mask, rows, micro):
            with autocast(ids.device):
                logits = forward(ids[c, :width])[:, :-1]
            old[c, :width - 1] = logprobs_from_logits(logits, ids[c, 1:width])
    return old


def _update_chunks(mask: torch.Tensor, rows: torch.Tensor, micro: int) -> list[tuple[torch.Tensor, int]]:
    """The chunks an update of `rows` runs: (row indices, ids width), by length (distributed.length_chunks: each
    cut after its longest row's last target). Mask column j marks the target ids[:, j + 1], so a chunk whose
    targets end before mask column w needs w + 1 ids."""
    return [(rows[c], width + 1) for c, width in length_chunks(mask[rows], micro)]


def _idle_update(policy: Policy, row: torch.Tensor, cfg: GRPOConfig) -> None:
    """A rank with no rows in an update still runs a forward and backward through DDP (of weight 0, so its
    gradient is 0) and the optimizer step: the other ranks' backward waits for its gradients."""
    policy.optimizer.zero_grad(set_to_none=True)
    with autocast(row.device):
        logits = policy.forward(row)
    zero = logits.float().mean() * 0.0
    zero.backward()
    apply_update(policy.model, policy.optimizer, zero.detach(), cfg.grad_clip)


def _minibatch_update(policy: Policy, ids, mask, adv, old_logp, ref_logp, rows, total: float, world: int,
                      micro: int, cfg: GRPOConfig, entropies: list[float]) -> dict:
    """One optimizer update on `rows` of the batch, in chunks by length (distributed.length_chunks: each cut
    after its longest row's last target) whose gradients accumulate. Each chunk weighs its
    loss by its share of `total`, what the aggregation divides by summed over all ranks, times `world`, since
    DDP averages the ranks' gradients: the update is that of the whole minibatch of every rank. Returns the
    loss's stats, weighted by tokens; appends each chunk's mean entropy over its response tokens to
    `entropies`."""
    chunks = _update_chunks(mask, rows, micro)
    agg = cfg.aggregation()
    n_tokens = max(1, mask[rows].sum().item())
    policy.optimizer.zero_grad(set_to_none=True)
    loss_sum, stats_sum = 0.0, {}
    for _, (c, width) in accumulate(policy.forward, chunks):
        m = mask[c, :width - 1]
        chunk_weight = float(aggregation_count(m, agg, cfg.max_new_tokens)) * world / total  # not m's width
        with autocast(ids.device):
            logits = policy.forward(ids[c, :width])[:, :-1]
        logp = logprobs_from_logits(logits, ids[c, 1:width])
        loss, stats = grpo_loss(logp, logp.detach() if old_logp is None else old_logp[c, :width - 1],
                                None if ref_logp is None else ref_logp[c, :width - 1], adv[c], m,
                                clip_eps=cfg.clip_eps, clip_eps_high=cfg.clip_eps_high, kl_coef=cfg.kl_coef,
                                agg=agg, max_len=cfg.max_new_tokens)
        (loss * chunk_weight).backward()
        loss_sum += loss.detach() * chunk_weight
        share = m.sum().item() / n_tokens  # token-weighted diagnostics
        stats_sum = {k: stats_sum.get(k, 0.0) + v * share for k, v in stats.items()}
        if m.any():  # the entropy of response tokens only: (tokens, V), not (rows, T, V)
            entropies.append(entropy_from_logits(logits.detach()[m]).mean().item())
    apply_update(policy.model, policy.optimizer, loss_sum, cfg.grad_clip)
    return stats_sum


def step_metrics(ro: Rollout, rewards: torch.Tensor, parts: dict[str, list[float]], mixed: torch.Tensor,
                 update: dict, t_gen: float, t_train: float, cfg: GRPOConfig, model,
                 measured: dict[str, list[float]] | None = None) -> dict:
    """The step's metrics, each a mean over every rank's completions (or groups, or ranks for the update's
    kl, clip_frac and entropy; or the values the stage `measured`): sums and counts are added over ranks, then
    divided. Every rank must report the same parts and measures. A measure with no values on any rank (the
    accuracy of the replies that reflect, when none does) is null."""
    world, device = rank_and_world()[1], ro.ids.device
    measured = measured or {}
    per_completion = {"reward": rewards.tolist(), **parts, "length": ro.lengths, **measured,
                      "mixed_groups": mixed.tolist(), **{k: [] if v is None else [v] for k, v in update.items()}}
    sums = sum_over_ranks([x for v in per_completion.values() for x in (sum(v), len(v))], device,
                          names=",".join(per_completion))
    metrics = {k: None if n == 0 and k in measured else round(s / max(1, n), 4)
               for k, s, n in zip(per_completion, sums[::2], sums[1::2])}
    train_rate = world * ro.ids.numel() * cfg.mu / max(t_train, 1e-6)  # forward + backward over the padded batch
    return {**metrics, "t_gen": round(t_gen, 2), "t_train": round(t_train, 2),
            "gen_tokens_per_s": round(world * sum(ro.lengths) / max(t_gen, 1e-6)),
            "train_tokens_per_s": round(train_rate), **throughput(train_rate, model.flops_per_token(), device, world)}
