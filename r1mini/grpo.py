"""GRPO: Group Relative Policy Optimization, the math only, as small pure functions (the RL loop that uses
them is r1mini/rl.py).

GRPO (DeepSeekMath §4.1, eq. 3-4; DeepSeek-R1 §2.2.1, eq. 1-3) is PPO without a value network: for each
prompt q the old policy samples a group of G completions o_1..o_G, each gets a scalar reward r_i, and every
token of o_i gets the same advantage, the reward normalised within its group:

    A_i = (r_i - mean(r_1..r_G)) / std(r_1..r_G)                                       (R1 eq. 3)

The policy maximises the clipped surrogate minus a KL penalty towards a frozen reference policy:

    J = 1/G sum_i 1/|o_i| sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta D_KL ]   (R1 eq. 1)
    rho_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t)
    D_KL   = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1     (R1 eq. 2; the "k3" estimator)

(DeepSeekMath numbers the same objective eq. 3 and the KL eq. 4; "eq. N" alone below means R1's.)

Everything here works on per-token log-probs of the sampled tokens, so rho = exp(logp - old_logp).

Options, and which are the papers' defaults:
- advantages, `scale`: "std" is DeepSeekMath/R1 (the default); "none" drops the division by the group std
  (Dr. GRPO, Liu et al. 2025: dividing by std up-weights prompts that are nearly always right or wrong).
- aggregation, `agg`: "seq-mean" is the 1/G sum_i 1/|o_i| sum_t of eq. 1 (the default); "token-mean" sums
  over all tokens of the batch and divides by their number, so long completions are not down-weighted
  (DAPO, Yu et al. 2025); "constant" divides the sum by B * max_len, a constant (Dr. GRPO), which removes
  the length bias of 1/|o_i| altogether. Each is one entry of the AGGREGATIONS table, which grpo_loss, the
  gradient accumulation (aggregation_count) and GRPOConfig's `agg` read by name; your own is an Aggregation
  passed as `agg` itself, or named as module:name on the command line (docs/extending.md, a GRPO variant).
- clipping: `clip_eps` is the papers' symmetric eps; `clip_eps_high` > clip_eps raises only the upper bound
  ("clip-higher", DAPO: 0.2 / 0.28), so unlikely tokens with A > 0 can grow more and entropy lasts longer.
- KL: `kl_coef` is beta. DeepSeekMath used beta = 0.04; our default 0.0 drops the term (as DAPO and Dr. GRPO
  do), which also makes the reference model unnecessary.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


class Aggregation(NamedTuple):
    """How grpo_loss turns the per-token objective into J: total(objective, mask) / count(mask, max_len), both
    (B, T) float tensors, the objective zero outside the mask. The count alone weights each micro-batch of a
    gradient accumulation by its share of the whole batch's count, so the accumulated update is the whole
    batch's: it must add up over rows (a sum, not a mean or a max)."""
    total: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    count: Callable[[torch.Tensor, int], torch.Tensor]


AGGREGATIONS: dict[str, Aggregation] = {
    # 1/G sum_i 1/|o_i| sum_t (DeepSeekMath / R1); a row without response tokens is not counted
    "seq-mean": Aggregation(lambda obj, m: (obj.sum(dim=1) / m.sum(dim=1).clamp(min=1)).sum(),
                            lambda m, max_len: (m.sum(dim=1) > 0).sum()),
    # sum over all tokens / number of tokens (DAPO)
    "token-mean": Aggregation(lambda obj, m: obj.sum(), lambda m, max_len: m.sum()),
    # sum / (B * max_len), a constant (Dr. GRPO)
    "constant": Aggregation(lambda obj, m: obj.sum(), lambda m, max_len: torch.tensor(m.shape[0] * max_len)),
}


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "std") -> torch.Tensor:
    """Advantage of each completion relative to its group (R1 eq. 3). rewards: 1-D, n_prompts * group_size,
    the completions of one prompt next to each other.

    scale="std": A_i = (r_i - mean) / (std + 1e-4), with the *population* std (Bessel's correction off,
    unbiased=False): std({r_1..r_G}) over the group as written in the paper, and a group of one gets A = 0
    rather than NaN. (TRL uses the sample std, which is larger by sqrt(G / (G-1)).)
    scale="none": A_i = r_i - mean (Dr. GRPO). Either way a group whose rewards are all equal gets A = 0.
    """
    _check_advantage_inputs(rewards, group_size, scale)
    r = rewards.float().view(-1, group_size)
    adv = r - r.mean(dim=1, keepdim=True)  # r_i - mean(r)
    if scale == "std":
        adv = adv / (r.std(dim=1, unbiased=False, keepdim=True) + 1e-4)  # / std(r)
    return adv.view(-1)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, *, clip_eps: float = 0.2,
              clip_eps_high: float | None = None, kl_coef: float = 0.0, agg: str | Aggregation = "seq-mean",
              max_len: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss, -J of R1 eq. 1, and diagnostics.

    logp, old_logp, ref_logp: (B, T) log-probs of the sampled tokens under pi_theta (with grad), pi_old and
    pi_ref (both treated as constants: detached here). advantages: (B,). mask: (B, T), bool or 0/1, True on
    response tokens; other positions (prompt, padding) get exactly zero gradient whatever their values.
    clip_eps_high=None means symmetric clipping (an explicit 0.0 is honoured). agg: a name in AGGREGATIONS or
    an Aggregation of your own. max_len is the "constant" aggregation's length budget, T when None. With
    agg="seq-mean", a row with no response tokens contributes nothing and is not counted among the sequences
    (no division by zero; an all-empty batch gives loss 0).

    stats (floats): "kl" (mean k3 KL over response tokens, 0.0 without ref_logp), "clip_frac" (share of
    response tokens where the clipped term is the active min, i.e. A > 0 and rho > 1+eps_high or A < 0 and
    rho < 1-eps: exactly the tokens whose surrogate gradient is zero), split into "clip_frac_low" and
    "clip_frac_high", "ratio_mean" (mean rho over response tokens), "ratio_dev" (mean |rho - 1|: 0 when
    the update is on-policy, whatever the advantages; numerical noise shows here first) and "adv_mean".
    """
    _check_loss_inputs(logp, old_logp, ref_logp, advantages, mask, clip_eps, clip_eps_high, kl_coef, agg, max_len)
    B, T = logp.shape
    eps_low = clip_eps
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    max_len = T if max_len is None else max_len

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
        kl = torch.exp(d) - d - 1  # D_KL = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1, eq. 2
    else:
        kl = torch.zeros_like(logp)
    objective = (surrogate - kl_coef * kl) * m

    aggregation = AGGREGATIONS[agg] if isinstance(agg, str) else agg
    J = aggregation.total(objective, m) / aggregation.count(m, max_len).clamp(min=1)  # an empty batch: J = 0
    loss = -J

    with torch.no_grad():
        n = m.sum().clamp(min=1)
        clip_low = ((A < 0) & (ratio < 1 - eps_low) & active).float().sum() / n
        clip_high = ((A > 0) & (ratio > 1 + eps_high) & active).float().sum() / n
        values = torch.stack([(kl * m).sum() / n, clip_low + clip_high, clip_low, clip_high,
                              (ratio * m).sum() / n, ((ratio - 1).abs() * m).sum() / n,
                              A.mean()]).tolist()  # one device sync, not seven
    names = ("kl", "clip_frac", "clip_frac_low", "clip_frac_high", "ratio_mean", "ratio_dev", "adv_mean")
    return loss, dict(zip(names, values))


def aggregation_count(mask: torch.Tensor, agg: str | Aggregation, max_len: int | None = None) -> torch.Tensor:
    """What an aggregation divides the summed objective by, for a (B, T) response mask: the number of
    non-empty sequences (seq-mean, after each is averaged over its tokens), of response tokens
    (token-mean) or B * max_len (constant). Gradient accumulation weights a micro-batch's loss by its count
    over the whole batch's, so that the accumulated update is the whole batch's."""
    aggregation = AGGREGATIONS[agg] if isinstance(agg, str) else agg
    return aggregation.count((mask != 0).float(), mask.shape[1] if max_len is None else max_len)


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
    """log softmax(logits) at the targets: (..., V), (...) -> (...), float32 whatever the logits' dtype.

    Computed in float32 (bf16 log-probs are too coarse for exp(logp - old_logp): upcast the logits first),
    and without materialising the full log_softmax tensor.
    """
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy H = -sum_v p_v log p_v of each next-token distribution: (..., V) -> (...), computed in and
    returned as float32 whatever the logits' dtype."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (F.softmax(logits, dim=-1) * logits).sum(dim=-1)


def _check_loss_inputs(logp, old_logp, ref_logp, advantages, mask, clip_eps, clip_eps_high, kl_coef, agg,
                       max_len) -> None:
    """grpo_loss's argument checks: a ValueError that says which input is wrong and what it must be."""
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
    if clip_eps < 0 or (clip_eps_high is not None and clip_eps_high < 0):
        raise ValueError(f"clip_eps and clip_eps_high must be >= 0, got {clip_eps}, {clip_eps_high}")
    if not isinstance(agg, Aggregation) and agg not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {agg!r}; choose one of {tuple(AGGREGATIONS)} or pass an Aggregation")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")


def _check_advantage_inputs(rewards: torch.Tensor, group_size: int, scale: str) -> None:
    """group_advantages' argument checks."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (n_prompts * group_size,), got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}: need "
                         f"group_size >= 1 dividing the number of rewards")
    if scale not in ("std", "none"):
        raise ValueError(f"unknown advantage scale {scale!r}; choose 'std' (GRPO) or 'none' (Dr. GRPO)")
