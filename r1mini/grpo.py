"""GRPO: Group Relative Policy Optimization, as small pure functions.

GRPO (DeepSeekMath §4.1, eq. 3-4; DeepSeek-R1 §2.2.1, eq. 1-3) is PPO without a value network: for each
prompt q the old policy samples a group of G completions o_1..o_G, each gets a scalar reward r_i, and every
token of o_i gets the same advantage, the reward normalised within its group:

    A_i = (r_i - mean(r_1..r_G)) / std(r_1..r_G)                                       (R1 eq. 3)

The policy maximises the clipped surrogate minus a KL penalty towards a frozen reference policy:

    J = 1/G sum_i 1/|o_i| sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta D_KL ]   (eq. 3)
    rho_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t)
    D_KL   = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1     (the "k3" estimator, DeepSeekMath eq. 4)

Everything here works on per-token log-probs of the sampled tokens, so rho = exp(logp - old_logp).

Options, and which are the papers' defaults:
- advantages, `scale`: "std" is DeepSeekMath/R1 (the default); "none" drops the division by the group std
  (Dr. GRPO, Liu et al. 2025: dividing by std up-weights prompts that are nearly always right or wrong).
- aggregation, `agg`: "seq-mean" is the 1/G sum_i 1/|o_i| sum_t of eq. 3 (the default); "token-mean" sums
  over all tokens of the batch and divides by their number, so long completions are not down-weighted
  (DAPO, Yu et al. 2025); "constant" divides the sum by B * max_len, a constant (Dr. GRPO), which removes
  the length bias of 1/|o_i| altogether.
- clipping: `clip_eps` is the papers' symmetric eps; `clip_eps_high` > clip_eps raises only the upper bound
  ("clip-higher", DAPO: 0.2 / 0.28), so unlikely tokens with A > 0 can grow more and entropy lasts longer.
- KL: `kl_coef` is beta. DeepSeekMath used beta = 0.04; our default 0.0 drops the term (as DAPO and Dr. GRPO
  do), which also makes the reference model unnecessary.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from r1mini.common import apply_update
from r1mini.sampling import generate

AGGREGATIONS = ("seq-mean", "token-mean", "constant")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "std") -> torch.Tensor:
    """Advantage of each completion relative to its group (R1 eq. 3). rewards: 1-D, n_prompts * group_size,
    the completions of one prompt next to each other.

    scale="std": A_i = (r_i - mean) / (std + 1e-4), with the *population* std (Bessel's correction off,
    unbiased=False): std({r_1..r_G}) over the group as written in the paper, and a group of one gets A = 0
    rather than NaN. (TRL uses the sample std, which is larger by sqrt(G / (G-1)).)
    scale="none": A_i = r_i - mean (Dr. GRPO). Either way a group whose rewards are all equal gets A = 0.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (n_prompts * group_size,), got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}: need "
                         f"group_size >= 1 dividing the number of rewards")
    if scale not in ("std", "none"):
        raise ValueError(f"unknown advantage scale {scale!r}; choose 'std' (GRPO) or 'none' (Dr. GRPO)")
    r = rewards.float().view(-1, group_size)
    adv = r - r.mean(dim=1, keepdim=True)  # r_i - mean(r)
    if scale == "std":
        adv = adv / (r.std(dim=1, unbiased=False, keepdim=True) + 1e-4)  # / std(r)
    return adv.view(-1)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, *, clip_eps: float = 0.2,
              clip_eps_high: float | None = None, kl_coef: float = 0.0, agg: str = "seq-mean",
              max_len: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss, -J of eq. 3, and diagnostics.

    logp, old_logp, ref_logp: (B, T) log-probs of the sampled tokens under pi_theta (with grad), pi_old and
    pi_ref (both treated as constants: detached here). advantages: (B,). mask: (B, T), bool or 0/1, True on
    response tokens; other positions (prompt, padding) get exactly zero gradient whatever their values.
    clip_eps_high=None means symmetric clipping (an explicit 0.0 is honoured). max_len is the "constant"
    aggregation's length budget, T when None. With agg="seq-mean", a row with no response tokens contributes
    nothing and is not counted among the sequences (no division by zero; an all-empty batch gives loss 0).

    stats (floats): "kl" (mean k3 KL over response tokens, 0.0 without ref_logp), "clip_frac" (share of
    response tokens where the clipped term is the active min, i.e. A > 0 and rho > 1+eps_high or A < 0 and
    rho < 1-eps: exactly the tokens whose surrogate gradient is zero), split into "clip_frac_low" and
    "clip_frac_high", "ratio_mean" (mean rho over response tokens) and "adv_mean".
    """
    if logp.dim() != 2:
        raise ValueError(f"logp must be (B, T), got shape {tuple(logp.shape)}")
    B, T = logp.shape
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask)):
        if t is not None and t.shape != logp.shape:
            raise ValueError(f"{name} must have logp's shape {(B, T)}, got {tuple(t.shape)}")
    if advantages.shape != (B,):
        raise ValueError(f"advantages must be (B,) = ({B},), one per sequence, got {tuple(advantages.shape)}")
    if kl_coef < 0 or (kl_coef > 0 and ref_logp is None):
        raise ValueError(f"kl_coef must be >= 0 and needs ref_logp when > 0 (got {kl_coef}, ref_logp "
                         f"{'None' if ref_logp is None else 'given'})")
    eps_low = clip_eps
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"clip_eps and clip_eps_high must be >= 0, got {clip_eps}, {clip_eps_high}")
    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {agg!r}; choose one of {AGGREGATIONS}")
    max_len = T if max_len is None else max_len
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")

    active = mask != 0
    m = active.float()
    logp = logp.float()
    A = advantages.detach().float()[:, None]  # A_i, the same for every token t of o_i
    # masked positions are replaced by 0 *before* exp, so garbage there (even -inf) cannot leak NaN
    log_ratio = torch.where(active, logp - old_logp.detach().float(), 0.0)
    ratio = torch.exp(log_ratio)  # rho_it = pi_theta / pi_old
    clipped_ratio = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    surrogate = torch.min(ratio * A, clipped_ratio * A)  # min(rho A, clip(rho, 1-eps, 1+eps) A)
    if ref_logp is not None:
        d = torch.where(active, ref_logp.detach().float() - logp, 0.0)  # log(pi_ref / pi_theta)
        kl = torch.exp(d) - d - 1  # D_KL = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1, eq. 4
    else:
        kl = torch.zeros_like(logp)
    objective = (surrogate - kl_coef * kl) * m

    if agg == "seq-mean":  # 1/G sum_i 1/|o_i| sum_t (DeepSeekMath / R1)
        lengths = m.sum(dim=1)
        per_seq = objective.sum(dim=1) / lengths.clamp(min=1)
        J = per_seq.sum() / (lengths > 0).sum().clamp(min=1)
    elif agg == "token-mean":  # sum over all tokens / number of tokens (DAPO)
        J = objective.sum() / m.sum().clamp(min=1)
    else:  # sum / (B * max_len), a constant (Dr. GRPO)
        J = objective.sum() / (B * max_len)
    loss = -J

    with torch.no_grad():
        n = m.sum().clamp(min=1)
        clip_low = ((A < 0) & (ratio < 1 - eps_low) & active).float().sum() / n
        clip_high = ((A > 0) & (ratio > 1 + eps_high) & active).float().sum() / n
        values = torch.stack([(kl * m).sum() / n, clip_low + clip_high, clip_low, clip_high,
                              (ratio * m).sum() / n, A.mean()]).tolist()  # one device sync, not six
    names = ("kl", "clip_frac", "clip_frac_low", "clip_frac_high", "ratio_mean", "adv_mean")
    return loss, dict(zip(names, values))


def sequence_logprobs(model: torch.nn.Module, input_ids: torch.Tensor,
                      response_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log pi(x_t | x_<t) for t = 1..T-1: (B, T-1), position j scores input_ids[:, j + 1].

    Rows must be right-padded (every sequence starts at position 0): under causal attention the padding
    after a sequence cannot change its log-probs. response_mask, (B, T) aligned with input_ids, zeroes the
    log-probs of tokens outside the response; grpo_loss then wants response_mask[:, 1:] as its mask.
    """
    if input_ids.dim() != 2 or input_ids.size(1) < 2:
        raise ValueError(f"input_ids must be (B, T) with T >= 2, got shape {tuple(input_ids.shape)}")
    if response_mask is not None and response_mask.shape != input_ids.shape:
        raise ValueError(f"response_mask must have input_ids' shape {tuple(input_ids.shape)}, "
                         f"got {tuple(response_mask.shape)}")
    logp = logprobs_from_logits(model(input_ids)[:, :-1], input_ids[:, 1:])
    if response_mask is not None:
        logp = logp * (response_mask[:, 1:] != 0)
    return logp


def logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits) at the targets: (..., V), (...) -> (...).

    In float32 (bf16 log-probs are too coarse for exp(logp - old_logp)), and without materialising the
    full log_softmax tensor.
    """
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy H = -sum_v p_v log p_v of each next-token distribution, in float32: (..., V) -> (...)."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (F.softmax(logits, dim=-1) * logits).sum(dim=-1)


# -- the rollout and the update step ----------------------------------------------------------------------

@dataclass
class Rollout:
    ids: torch.Tensor  # (B, T) prompt + completion, right-padded, B = n_prompts * group_size
    mask: torch.Tensor  # (B, T-1) True where the *target* token ids[:, j+1] belongs to a completion
    completions: list[str]  # decoded completions, stop tokens removed
    lengths: list[int]  # completion lengths in tokens


@torch.no_grad()
def rollout(model, tokenizer, prompt_ids: list[list[int]], group_size: int, *, max_new_tokens: int,
            stop_ids: list[int], temperature: float = 1.0, top_p: float = 1.0,
            generator: torch.Generator | None = None) -> Rollout:
    """Sample group_size completions for every prompt with the KV cache (groups contiguous)."""
    device = next(model.parameters()).device
    prompts = [p for p in prompt_ids for _ in range(group_size)]
    pad = stop_ids[0]
    new = generate(model, prompts, max_new_tokens, temperature=temperature, top_p=top_p, stop_ids=stop_ids,
                   pad_id=pad, generator=generator)
    T = max(len(p) + len(c) for p, c in zip(prompts, new))
    ids = torch.full((len(new), T), pad, dtype=torch.long)
    mask = torch.zeros(len(new), T - 1, dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompts, new)):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        mask[i, len(p) - 1:len(p) + len(c) - 1] = True  # targets at positions len(p) .. len(p)+len(c)-1
    completions = [tokenizer.decode([t for t in c if t not in stop_ids]) for c in new]
    return Rollout(ids.to(device), mask.to(device), completions, [len(c) for c in new])


def grpo_update(model, optimizer, ro: Rollout, advantages: torch.Tensor, keep: torch.Tensor, *, mu: int = 1,
                minibatches: int = 1, clip_eps: float = 0.2, clip_eps_high: float | None = None,
                kl_coef: float = 0.0, ref_model=None, agg: str = "seq-mean", max_len: int | None = None,
                grad_clip: float = 1.0, autocast_ctx=None, ddp_model=None, micro_batch_size: int = 0) -> dict:
    """mu passes of GRPO updates over the kept rows of a rollout, in minibatches; returns mean stats.

    Old log-probs are taken once, before the first update (with mu = minibatches = 1 the single update is
    on-policy: old = current, ratio = 1, and the extra forward pass is skipped). micro_batch_size > 0 splits
    each minibatch into chunks of that many rows whose gradients accumulate into the same update: each
    chunk's loss is weighted by its share of what the aggregation divides by (sequences, tokens or rows),
    so the update is the minibatch's, in less memory.
    """
    ctx = autocast_ctx or contextlib.nullcontext
    fwd = model if ddp_model is None else ddp_model  # not `or`: a compiled module has no truth value
    idx = keep.nonzero().squeeze(1)
    rows, entropies = [], []
    if len(idx) == 0:
        return {"kl": 0.0, "clip_frac": 0.0, "entropy": 0.0}
    ids, mask, adv = ro.ids[idx], ro.mask[idx], advantages[idx]
    with torch.no_grad(), ctx():
        old_logp = logprobs_from_logits(model(ids)[:, :-1], ids[:, 1:]) if mu * minibatches > 1 else None
        ref_logp = logprobs_from_logits(ref_model(ids)[:, :-1], ids[:, 1:]) if ref_model is not None else None
    for _ in range(mu):
        for mb in torch.arange(len(idx), device=ids.device).chunk(minibatches):
            chunks = mb.split(micro_batch_size or len(mb))
            lengths = mask[mb].sum(1)
            total = {"seq-mean": (lengths > 0).sum(), "token-mean": lengths.sum(), "constant": len(mb)}[agg]
            optimizer.zero_grad(set_to_none=True)
            loss_sum, stats_sum = 0.0, {}
            for i, c in enumerate(chunks):
                n = mask[c].sum(1)
                weight = float({"seq-mean": (n > 0).sum(), "token-mean": n.sum(), "constant": len(c)}[agg]) / max(1, float(total))
                sync = fwd.no_sync() if hasattr(fwd, "no_sync") and i < len(chunks) - 1 else contextlib.nullcontext()
                with sync:
                    with ctx():
                        logits = fwd(ids[c])[:, :-1]
                    logp = logprobs_from_logits(logits, ids[c, 1:])
                    loss, stats = grpo_loss(logp, logp.detach() if old_logp is None else old_logp[c],
                                            None if ref_logp is None else ref_logp[c], adv[c], mask[c],
                                            clip_eps=clip_eps, clip_eps_high=clip_eps_high, kl_coef=kl_coef,
                                            agg=agg, max_len=max_len)
                    (loss * weight).backward()
                loss_sum += loss.detach() * weight
                share = n.sum().item() / max(1, lengths.sum().item())  # token-weighted diagnostics
                stats_sum = {k: stats_sum.get(k, 0.0) + v * share for k, v in stats.items()}
                if mask[c].any():
                    with torch.no_grad():
                        entropies.append(entropy_from_logits(logits.detach())[mask[c]].mean().item())
            apply_update(model, optimizer, loss_sum, grad_clip)
            rows.append(stats_sum)
    return {"kl": sum(r["kl"] for r in rows) / len(rows), "clip_frac": sum(r["clip_frac"] for r in rows) / len(rows),
            "entropy": sum(entropies) / max(1, len(entropies))}
