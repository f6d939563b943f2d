"""One optimizer update, the same in every stage, and the learning-rate schedule. A NaN or inf loss or
gradient is refused before the update with a FloatingPointError, which the scripts turn into what to do
(r1mini/stage.py, step_guard)."""
from __future__ import annotations

import math

import torch

from r1mini.distributed import unwrap


def apply_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float,
                 moe_model: torch.nn.Module | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """With the gradients in place (one backward or several accumulated): clip their norm, refuse a NaN or
    inf loss or gradient (FloatingPointError, raised before the update), step, then nudge every DeepSeekMoE
    routing bias (aux-loss-free balancing runs once per optimizer step; `moe_model` is the Transformer that
    holds the MoE layers when `model` is a wrapper around it). Returns the gradient norm and the expert loads."""
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    # checked after backward, where DDP has all-reduced the gradients, so every rank stops together
    if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
        raise FloatingPointError(f"loss is {loss.item():.4g}, gradient norm {grad_norm.item():.4g}")
    optimizer.step()
    moe_layers = (unwrap(model) if moe_model is None else moe_model).moe_layers()
    return grad_norm, [moe.update_bias() for moe in moe_layers]


def learning_rate(step: int, total: int, *, warmup: int, peak: float = 1.0, decay_from: int | None = None,
                  min_ratio: float = 0.0) -> float:
    """The learning rate at `step` (counted from 0) of `total`: linear warmup to `peak` over the first `warmup`
    steps, `peak` until `decay_from` (default: the warmup's end; later, a stable phase: warmup-stable-decay),
    then cosine decay to peak * min_ratio at `total`. With the default peak of 1 it is the factor that a stage
    multiplies its peak learning rate by (sft.py); pretrain.py asks for the rate itself."""
    if step < warmup:
        return peak * (step + 1) / warmup
    start = warmup if decay_from is None else decay_from
    if step < start:
        return peak
    progress = min(1.0, (step - start) / max(1, total - start))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
