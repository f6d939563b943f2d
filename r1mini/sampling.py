"""Batched generation with the KV cache: temperature, top-p (nucleus), stop tokens, per-sequence lengths.

Prompts of different lengths are left-padded to a common length; each sequence keeps its own positions
(so RoPE sees the same positions as it would alone) and the cache's validity mask hides the padding. One
batched forward pass fills the cache with every prompt (prefill); then each step feeds one token per
sequence, with no per-token Python work that grows with the length or the batch. When more than half of the
batch has stopped, the finished rows are dropped from the batch and the cache, so long stragglers do not
drag the whole batch along. `generate_no_cache` is the slow reference: it recomputes the whole sequence for every token.
"""
from __future__ import annotations

import torch

from r1mini.device import autocast, cache_dtype
from r1mini.model import KVCache, Transformer


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of logits (B, V). temperature 0 is greedy."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and top_p in (0, 1], got {temperature}, {top_p}")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        # keep the smallest set of most likely tokens whose mass reaches top_p (the first always survives)
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    # inverse-CDF sampling: one uniform number per row, where torch.multinomial draws one per vocabulary
    # entry (a sixth of a cpu-preset rollout's time). Zero-probability tokens have zero-width intervals.
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[-1] - 1).squeeze(-1)


@torch.no_grad()
def generate(model: Transformer, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 1.0,
             top_p: float = 1.0, stop_ids: tuple[int, ...] | list[int] = (), pad_id: int = 0,
             generator: torch.Generator | None = None) -> list[list[int]]:
    """Continue every prompt; returns the new tokens of each, ending with its stop token if one came.

    Generation stops for a sequence at its first stop token, or after max_new_tokens, or when its total
    length reaches the model's block_size.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt, and no empty prompt")
    device = next(model.parameters()).device
    cfg = model.cfg
    B, P = len(prompts), max(len(p) for p in prompts)
    max_new_tokens = min(max_new_tokens, cfg.block_size - P)
    if max_new_tokens <= 0:
        raise ValueError(f"prompt of {P} tokens leaves no room in block_size {cfg.block_size}")
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    idx = torch.full((B, P), pad_id, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        idx[i, P - len(p):] = torch.tensor(p, device=device)
    # the cache is bf16 on CUDA, so the forward passes must run under bf16 autocast there: a float32
    # query against bf16 keys is an error in scaled_dot_product_attention
    amp = autocast(device)
    cache = KVCache(cfg, B, P + max_new_tokens, device, cache_dtype(device, next(model.parameters()).dtype))
    cache.valid[:, :P] = torch.arange(P, device=device)[None] >= (P - lengths)[:, None]
    positions = (torch.arange(P, device=device)[None] - (P - lengths)[:, None]).clamp(min=0)

    was_training = model.training
    model.eval()
    with amp:
        logits = model(idx, cache=cache, positions=positions)[:, -1]  # prefill: all prompts in one pass
    stop = torch.tensor(list(stop_ids) or [-1], device=device)
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device)  # the original row of each sequence still in the batch
    done = torch.zeros(B, dtype=torch.bool, device=device)
    n = 0
    for t in range(max_new_tokens):
        tok = sample_next(logits, temperature, top_p, generator)
        tok = tok.masked_fill(done, pad_id)
        out[rows, t] = tok
        n = t + 1
        done |= torch.isin(tok, stop)
        n_done = int(done.sum())  # the one host sync per token; cheap next to the forward
        if t == max_new_tokens - 1 or n_done == len(done):
            break
        if 2 * n_done > len(done):  # most rows finished: drop them from the batch and the cache
            keep = (~done).nonzero().squeeze(1)
            rows, tok, done, lengths = rows[keep], tok[keep], done[keep], lengths[keep]
            cache.k, cache.v, cache.valid = cache.k[:, keep], cache.v[:, keep], cache.valid[keep]
        cache.valid[:, P + t] = True
        with amp:
            logits = model(tok[:, None], cache=cache, positions=(lengths + t)[:, None])[:, -1]
    model.train(was_training)

    results = []
    for row in out[:, :n].tolist():
        hits = [j for j, x in enumerate(row) if x in stop_ids]
        results.append(row[:hits[0] + 1] if hits else row)
    return results


@torch.no_grad()
def generate_no_cache(model: Transformer, prompt: list[int], max_new_tokens: int,
                      stop_ids: tuple[int, ...] | list[int] = ()) -> list[int]:
    """Greedy decoding of one prompt by recomputing the full sequence at every step (the reference)."""
    device = next(model.parameters()).device
    seq = list(prompt)
    new: list[int] = []
    was_training = model.training
    model.eval()
    while len(new) < max_new_tokens and len(seq) < model.cfg.block_size:
        logits = model(torch.tensor([seq], device=device))[0, -1]
        tok = int(logits.argmax())
        seq.append(tok)
        new.append(tok)
        if tok in stop_ids:
            break
    model.train(was_training)
    return new
