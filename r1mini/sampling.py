"""Batched generation with the KV cache: temperature, top-p (nucleus), stop tokens, per-sequence lengths.

Prompts of different lengths are left-padded to a common length; each sequence keeps its own positions
(so RoPE sees the same positions as it would alone) and the cache's validity mask hides the padding. One
batched forward pass fills the cache with every prompt (prefill; a prompt repeated over rows, as in GRPO's
groups, runs once and is copied); then each step feeds one token per sequence, with no per-token Python work
that grows with the length or the batch. When more than half of the batch has stopped, the finished rows are
dropped from the batch and the cache, so long stragglers do not drag the whole batch along.
`generate_no_cache` is the slow reference: it recomputes the whole sequence for every token.

On a GPU that loop is bound by kernel launches (~1,000 small kernels per step for the same few ms whatever the
batch), so on CUDA generate takes a static decode loop instead (`decode_static`, gpt-fast's approach): every
step has the same shapes (the cache spans block_size, the new token goes to a slot given as a tensor, finished
rows decode pad instead of leaving), so torch.compile can capture the step as a CUDA graph and replay it with
one launch. The first call compiles (a minute or so); `static=False` turns it off.

For problems rather than token ids, `sample_completions` prompts k completions of each problem and decodes them
(evaluation, rejection sampling, distillation), and `sample_striped` splits that work over the ranks.
"""
from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm import tqdm

from r1mini.device import autocast, cache_dtype, cuda_paths
from r1mini.distributed import map_striped, rank_and_world
from r1mini.formats import answer_format, prompt_ids
from r1mini.memory import generation_batch, hold
from r1mini.model import KVCache, Transformer

if TYPE_CHECKING:  # for the annotations only: tasks.py needs nothing from here
    from r1mini.tasks import Problem


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of logits (B, V): token ids (B,). temperature 0 is greedy (argmax).

    Order: temperature first, then top-p, then a draw (token_probs, then sample_from). The logits are divided
    by the temperature and softmaxed; the nucleus is cut from *those* probabilities: the smallest set of most
    likely tokens whose mass reaches top_p (>=: at an exact boundary, e.g. top_p 0.5 over four tokens of 0.25,
    two tokens and not three). The most likely token always survives; the survivors are renormalised. top_p 1
    keeps every token.
    """
    check_sampling(temperature, top_p)
    if temperature == 0:
        return logits.argmax(-1)
    return sample_from(token_probs(logits, temperature, top_p), generator)


def check_sampling(temperature: float, top_p: float) -> None:
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and top_p in (0, 1], got {temperature}, {top_p}")


def token_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution sample_next draws from, (B, V) in float32: softmax(logits / temperature), cut to the
    nucleus by top-p and not renormalised (the kept tokens' mass); temperature 0: one-hot on the argmax."""
    if temperature == 0:
        return F.one_hot(logits.argmax(-1), logits.size(-1)).float()
    logits = logits.float()
    probs = torch.softmax(logits if temperature == 1 else logits / temperature, dim=-1)  # x / 1 is x: skipped
    return nucleus(probs, top_p) if top_p < 1 else probs


NUCLEUS_HEAD = 64  # nucleus() looks for the nucleus among this many most likely tokens first


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """probs (B, V) cut to the smallest set of most likely tokens whose mass reaches top_p (the first
    always survives), not renormalised: token j of the ranking is dropped when the mass ranked above it
    reaches top_p.

    On the CPU the ranking is first taken of the NUCLEUS_HEAD + 1 most likely tokens only (torch.topk,
    sorted): when the last of them is dropped in every row, so is every token after it, and the cut is the
    full sort's at a quarter of its cost (the sort is a fifth of a decode step at 512 rows, temperature
    0.6). A row that keeps it sends the batch through the full sort. On CUDA always the full sort: the
    check is a host sync, and a branch that a CUDA graph cannot hold."""
    def cut(top, order):  # top: probabilities ranked largest first, order: their token ids
        drop = top.cumsum(-1) - top >= top_p
        return drop, torch.zeros_like(probs).scatter(-1, order, top.masked_fill(drop, 0.0))

    if not probs.is_cuda and NUCLEUS_HEAD + 1 < probs.size(-1):
        drop, cut_probs = cut(*probs.topk(NUCLEUS_HEAD + 1, dim=-1))
        if bool(drop[:, -1].all()):
            return cut_probs
    return cut(*probs.sort(dim=-1, descending=True))[1]


def sample_from(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of probs (B, V), which need not sum to 1. Inverse-CDF sampling: one uniform number
    per row, where torch.multinomial draws one per vocabulary entry (a sixth of a cpu-preset rollout's
    time). Zero-probability tokens have zero-width intervals."""
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[-1] - 1).squeeze(-1)


@torch.no_grad()
def generate(model: Transformer, prompts: list[list[int]], max_new_tokens: int, *, temperature: float = 1.0,
             top_p: float = 1.0, stop_ids: tuple[int, ...] | list[int] = (), pad_id: int = 0,
             generator: torch.Generator | None = None, static: bool | None = None, speculative: bool = False,
             stats: dict | None = None) -> list[list[int]]:
    """Continue every prompt; returns the new tokens of each, ending with its stop token if one came.

    Generation stops for a sequence at its first stop token, or after max_new_tokens, or when its total
    length reaches the model's block_size.

    `static` picks the decode loop. None (the default): the static one on the CUDA paths (compiled into CUDA
    graphs on a GPU, eager under R1MINI_EMULATE_CUDA), the dynamic one elsewhere. True: the static one on
    any device (eager off CUDA: the same code, no compiler). False: the dynamic one. Both give the same
    tokens, up to float rounding (see decode_static).

    `speculative`: the model's first MTP module drafts one token ahead and the model verifies it in the same
    forward (decode_speculative); the tokens come from the same distribution. `stats`, a dict, receives the
    drafts proposed and accepted (speculative decoding only).
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt, and no empty prompt")
    if speculative and not model.cfg.mtp_depth:
        raise ValueError("speculative decoding drafts with an MTP module, and this model has none: pretrain "
                         "one with mtp_depth 1, or turn speculative decoding off")
    device = next(model.parameters()).device
    static = (cuda_paths(device) if static is None else static) and not speculative
    cfg = model.cfg
    n_real = len(prompts)
    if static:  # rows up to a power of two: each batch size records (and compiles) a CUDA graph of its own
        prompts = prompts + [[pad_id]] * ((1 << (n_real - 1).bit_length()) - n_real)
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
    dtype = cache_dtype(device, next(model.parameters()).dtype)
    # speculative decoding writes two slots a step (the token and the draft) whether or not the draft stays
    n_slots = P + (2 * max_new_tokens if speculative else max_new_tokens)
    cache = static_cache(model, B, dtype) if static else KVCache(cfg, B, n_slots, device, dtype)
    cache.valid[:, :P] = torch.arange(P, device=device)[None] >= (P - lengths)[:, None]
    positions = (torch.arange(P, device=device)[None] - (P - lengths)[:, None]).clamp(min=0)

    was_training = model.training
    model.eval()
    stop = torch.tensor(list(stop_ids) or [-1], device=device)
    # on the CPU, the blocks' weights laid out for decoding once for the whole call (Transformer.decoding); on
    # the CUDA paths as they are (a compiled step would be compiled again for every new weight tensor)
    with contextlib.nullcontext() if cuda_paths(device) else model.decoding():
        if speculative:
            check_sampling(temperature, top_p)
            probs = functools.partial(token_probs, temperature=temperature, top_p=top_p)
            out = decode_speculative(model, cache, idx, positions, max_new_tokens, pad_id=pad_id, stop=stop,
                                     probs=probs, generator=generator, stats=stats)
        else:
            logits = prefill(model, cache, idx, positions)
            sample = functools.partial(sample_next, temperature=temperature, top_p=top_p, generator=generator)
            if static:
                out = decode_static(model, cache, logits, lengths, max_new_tokens, pad_id=pad_id, stop=stop,
                                    sample=sample, n_real=n_real)
            else:
                out = decode_dynamic(model, cache, logits, lengths, max_new_tokens, pad_id=pad_id, stop=stop,
                                     sample=sample)
    model.train(was_training)

    results = []
    for row in out[:n_real].tolist():
        hits = [j for j, x in enumerate(row) if x in stop_ids]
        results.append(row[:hits[0] + 1] if hits else row)
    return results


def prefill(model: Transformer, cache: KVCache, idx: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Run the left-padded prompts idx (B, P) at `positions` into the empty cache, whose `valid` marks their
    real tokens, in one pass (eager on both decode paths: its shape varies), and return the logits (B, V)
    of their last position only (float32 logits of every prompt position would take rows x prompt x
    vocabulary x 4 bytes).

    A prompt that several rows share (a GRPO rollout samples each one group_size times) runs once: the
    distinct prompts fill a cache of their own, whose keys and values are copied to every row that repeats
    them. The prefill then costs the distinct prompts, not the rows: it was 15% of a cpu-preset rollout of
    8 prompts x 8 samples and 96 new tokens, and 1/8 of that remains."""
    B, P = idx.shape
    # rows are the same prompt when their tokens and their real slots (its length) are
    key = torch.cat([idx, cache.valid[:, :P].long()], 1)
    distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
    if len(distinct) == B:
        with autocast(idx.device):
            return model.head(model.norm(model.trunk(idx, positions, cache=cache)[:, -1]))
    first = torch.full((len(distinct),), B, device=idx.device).scatter_reduce(
        0, inverse, torch.arange(B, device=idx.device), "amin")  # a row of each distinct prompt
    shared = KVCache(model.cfg, len(distinct), P, idx.device, cache.k.dtype)
    shared.valid[:] = cache.valid[first, :P]
    with autocast(idx.device):
        logits = model.head(model.norm(model.trunk(idx[first], positions[first], cache=shared)[:, -1]))
    for layer in range(model.cfg.n_layer):  # layer by layer: the rows gathered are a temporary of one layer
        cache.k[layer, :, :, :P] = shared.k[layer, inverse]
        cache.v[layer, :, :, :P] = shared.v[layer, inverse]
    cache.length = P
    return logits[inverse]


def decode_dynamic(model: Transformer, cache: KVCache, logits: torch.Tensor, lengths: torch.Tensor,
                   max_new_tokens: int, *, pad_id: int, stop: torch.Tensor, sample) -> torch.Tensor:
    """The decode loop after the prefill, attending only to the slots filled so far; returns the new tokens
    (B, n), pad after a row's stop token. When more than half of the batch has stopped, the finished rows
    are dropped from the batch and the cache."""
    device, B, P = logits.device, len(lengths), cache.length
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device)  # the original row of each sequence still in the batch
    done = torch.zeros(B, dtype=torch.bool, device=device)
    n = 0
    for t in range(max_new_tokens):
        tok = sample(logits)
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
        with autocast(device):
            logits = model(tok[:, None], cache=cache, positions=(lengths + t)[:, None])[:, -1]
    return out[:, :n]


def decode_speculative(model: Transformer, cache: KVCache, idx: torch.Tensor, positions: torch.Tensor,
                       max_new_tokens: int, *, pad_id: int, stop: torch.Tensor, probs, generator=None,
                       stats: dict | None = None) -> torch.Tensor:
    """Speculative decoding with the model's own MTP draft (DeepSeek-V3 §2.2's suggested use; the accept /
    resample rule of Leviathan et al. 2023 and Chen et al. 2023). Prefill, then each step:

    1. the MTP module, from the hidden state before the next token `tok` and tok's embedding, gives q, the
       distribution of the token after tok; the draft d ~ q;
    2. one forward of the model over [tok, d] gives p1 (the distribution after tok) and p2 (after d);
    3. d is kept with probability min(1, p1(d) / q(d)), and then the next token is drawn from p2; else
       the next token is drawn from the residual max(0, p1 - q) (normalised) and d's cache slot becomes a
       hole, masked like padding. Either way every emitted token has exactly the model's distribution
       (p1 = q(d) min(1, p1/q) + (1 - sum min(p1, q)) residual), at temperature 0 too (one-hot p and q:
       the greedy tokens).

    A step writes two cache slots per row (kept or not), emits one or two tokens per row, and takes two
    forwards (the model's over 2 tokens, the MTP block's over 2): at the cost of one extra block, an accepted
    draft saves a whole forward of the model. `probs` maps logits to sample_next's distribution
    (token_probs). As in decode_dynamic, finished rows are dropped once they are most of the batch.
    Returns the new tokens (B, n)."""
    device, (B, P), cfg = idx.device, idx.shape, model.cfg

    def normalised(logits: torch.Tensor) -> torch.Tensor:  # the ratio p1(d) / q(d) needs true probabilities
        p = probs(logits.float())
        return p / p.sum(-1, keepdim=True)

    with autocast(device):
        h = model.trunk(idx, cache=cache, positions=positions)  # (B, P, C): the prompt's hidden states
        tok = sample_from(normalised(model.head(model.norm(h[:, -1]))), generator)
        # the MTP block over the prompt: at position i, h_i and the token after it (the last: tok)
        q_logits = model.mtp_draft(h, torch.cat([idx[:, 1:], tok[:, None]], 1), positions, cache)[:, -1]
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    n_out = torch.zeros(B, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)

    def emit(tokens: torch.Tensor, where: torch.Tensor) -> None:  # n_out and out by original row
        where = where & ~done
        original = rows[where]
        out[original, n_out[original]] = tokens[where]
        n_out[original] += 1
        done.logical_or_(where & torch.isin(tokens, stop) | (n_out[rows] >= max_new_tokens))

    emit(tok, torch.ones_like(done))
    pos = positions[:, -1] + 1  # the position of tok
    drafted, accepted = 0, torch.zeros((), dtype=torch.long, device=device)
    for slot in range(P, P + 2 * max_new_tokens, 2):
        n_done = int(done.sum())  # the one host sync per step
        if n_done == len(done):
            break
        if 2 * n_done > len(done):  # most rows finished: drop them from the batch and the cache
            keep = (~done).nonzero().squeeze(1)
            cache.k, cache.v, cache.valid = cache.k[:, keep], cache.v[:, keep], cache.valid[keep]
            rows, tok, pos, q_logits, done = rows[keep], tok[keep], pos[keep], q_logits[keep], done[keep]
            n_done = 0
        drafted += len(done) - n_done  # one draft per row still decoding
        q = normalised(q_logits)
        draft = sample_from(q, generator)
        step_pos = torch.stack([pos, pos + 1], 1).clamp(max=cfg.block_size - 1)  # clamped: finished rows only
        cache.valid[:, slot:slot + 2] = True
        with autocast(device):
            h = model.trunk(torch.stack([tok, draft], 1), step_pos, cache=cache)  # (B, 2, C), slots slot, slot + 1
            logits = model.head(model.norm(h))
        p1, p2 = normalised(logits[:, 0]), normalised(logits[:, 1])
        accept, resampled = accept_draft(p1, q, draft, generator)
        nxt = torch.where(accept, sample_from(p2, generator), resampled)
        accepted += (accept & ~done).sum()
        emit(draft, accept)
        emit(nxt, torch.ones_like(done))
        cache.valid[:, slot + 1] &= accept  # a rejected draft's slot: a hole, invisible from now on
        # the MTP block at both slots: after tok came the draft (kept) or nxt; after the draft, nxt
        with autocast(device):
            q_logits = model.mtp_draft(h, torch.stack([torch.where(accept, draft, nxt), nxt], 1), step_pos, cache)
        q_logits = torch.where(accept[:, None], q_logits[:, 1], q_logits[:, 0])
        pos, tok = pos + 1 + accept.long(), nxt
    if stats is not None:
        stats["drafted"] = stats.get("drafted", 0) + drafted
        stats["accepted"] = stats.get("accepted", 0) + int(accepted)
    return out[:, :int(n_out.max())]


def accept_draft(p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The accept / resample rule of speculative sampling, per row: the draft d (B,), drawn from q (B, V), is
    accepted with probability min(1, p(d) / q(d)) (p, q normalised); where it is not, the token is drawn
    from the residual max(0, p - q), normalised. Returns (accepted (B,) bool, the residual's token (B,),
    meaningful where not accepted). The token that results has distribution p exactly: P(d = x accepted)
    = q(x) min(1, p(x) / q(x)) = min(q(x), p(x)), and the rejections, of total probability
    1 - sum_x min(p(x), q(x)) = sum_x max(0, p(x) - q(x)), add the rest, max(0, p(x) - q(x))."""
    p_d, q_d = p.gather(1, draft[:, None])[:, 0], q.gather(1, draft[:, None])[:, 0]
    u = torch.rand(p.size(0), generator=generator, device=p.device)
    accept = u * q_d < p_d  # u < p(d) / q(d): probability min(1, p(d) / q(d)), no division by q(d)
    residual = (p - q).clamp(min=0)
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p)  # p == q: never rejected anyway
    return accept, sample_from(residual, generator)


def decode_step(model: Transformer, cache: KVCache, tok: torch.Tensor, positions: torch.Tensor,
                slot: torch.Tensor) -> torch.Tensor:
    """One static-shape decode step: the tokens tok (B, 1) at `positions` (B, 1) go to cache slot `slot`
    (a 1-element tensor) and attend over the whole cache; returns the logits (B, V). Every call has the same
    shapes and no host sync, which is what a CUDA graph needs."""
    cache.valid.index_fill_(1, slot, True)  # the new slot holds a token in every row (finished rows: pad)
    return model(tok, cache=cache, positions=positions, slots=slot)[:, -1]


@functools.cache
def compiled_decode_step():
    """decode_step compiled with CUDA graphs (gpt-fast's approach): a step replays as one graph instead of
    ~1,000 kernel launches, which is what bounds decoding a small model on a GPU. fullgraph: a graph break
    would split the step into pieces; dynamic=False: one graph per batch size, no symbolic shapes. Batch
    sizes are powers of two (generate pads the rows), and eval.py decodes several checkpoints in one
    process: one graph per model and size, more than dynamo's default limit of 8 before it falls back to
    eager."""
    allow_recompiles(64)
    return torch.compile(decode_step, mode="reduce-overhead", fullgraph=True, dynamic=False)


def allow_recompiles(n: int) -> None:
    """Let dynamo compile a function for at least n input shapes before it falls back to eager. torch 2.7
    renamed the setting from cache_size_limit to recompile_limit (keeping the old name as an alias); torch
    2.5 and 2.6, which pyproject allows, know only the old name."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), n))


# the static path's caches, one per model, batch size and dtype, kept between calls: a CUDA graph replays
# on the addresses it was recorded with, and a new cache every call would re-record it every call
_static_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def static_cache(model: Transformer, batch_size: int, dtype: torch.dtype) -> KVCache:
    """An empty KV cache of block_size slots for the static path (block_size whatever the prompt, so that
    every call with this batch size has the same shapes), reused from the last call when there was one."""
    device = next(model.parameters()).device
    caches = _static_caches.setdefault(model, {})
    key = (batch_size, device, dtype)
    if key not in caches:
        caches[key] = KVCache(model.cfg, batch_size, model.cfg.block_size, device, dtype)
        for t in (caches[key].k, caches[key].v, caches[key].valid):
            # tells CUDA graphs the step may write to it in place at a fixed address (without this, a graph
            # whose inputs are mutated is not captured)
            torch._dynamo.mark_static_address(t)
            hold(t)  # taken from every memory budget until the model goes (memory.device_memory_bytes)
    cache = caches[key]
    cache.length = 0
    cache.valid.zero_()  # the last call's keys and values stay, masked out until overwritten
    return cache


def decode_static(model: Transformer, cache: KVCache, logits: torch.Tensor, lengths: torch.Tensor,
                  max_new_tokens: int, *, pad_id: int, stop: torch.Tensor, sample, n_real: int | None = None
                  ) -> torch.Tensor:
    """The decode loop with static shapes: decode_step writes each token at a slot given as a tensor and
    attends over the whole cache (block_size slots) under a mask, and no row is ever dropped: a finished row
    keeps decoding pad tokens, which the result never shows. On CUDA the step runs as a CUDA graph; sampling
    stays outside it. Returns the new tokens (B, n) like decode_dynamic. Rows from n_real on only fill the
    batch up to a size already recorded: they are finished from the start and draw no random numbers.

    The tokens match the dynamic loop's, and the random numbers too (one per row and step, as long as the
    dynamic loop has dropped no row), but not always the logits' last bits: masked slots add exactly 0, yet
    CPU attention and matmul kernels sum in an order that depends on the number of keys or rows.
    """
    device, B, P = logits.device, len(lengths), cache.length
    compiled = uses_cuda_graphs(device)
    step = compiled_decode_step() if compiled else decode_step
    skips = cudagraph_skips()
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    n_real = B if n_real is None else n_real
    done = torch.arange(B, device=device) >= n_real
    slot = torch.tensor([P], device=device)
    for t in range(max_new_tokens):
        tok = torch.cat([sample(logits[:n_real]), logits.new_full((B - n_real,), pad_id, dtype=torch.long)])
        tok = tok.masked_fill(done, pad_id)
        out[:, t] = tok
        done |= torch.isin(tok, stop)
        # stop when every row has: checked every 8 steps, as the check waits for the GPU to catch up
        if t == max_new_tokens - 1 or (t % 8 == 7 and bool(done.all())):
            break
        if compiled:
            torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs may be overwritten now
        with autocast(device):
            # clone: the graph's output lives in its memory pool, overwritten by the next replay
            try:
                logits = step(model, cache, tok[:, None], (lengths + t)[:, None], slot + t).clone()
            except Exception as e:  # noqa: BLE001 (a compiler failure: same step, eagerly, from now on)
                if step is decode_step or out_of_memory(e):  # out of memory: the caller says what to lower
                    raise
                _compile_failed(e)
                step = decode_step
                logits = step(model, cache, tok[:, None], (lengths + t)[:, None], slot + t).clone()
        if compiled and t == 0:  # the first step compiled and recorded the graph, or did not
            _report_graph_skips(cudagraph_skips() - skips)
    return out[:, :t + 1]


def uses_cuda_graphs(device: torch.device) -> bool:
    """Whether decode_static runs its step compiled into CUDA graphs: on a GPU. Never on the CPU, where
    R1MINI_EMULATE_CUDA runs decode_step eagerly (compiling it takes a minute there)."""
    return device.type == "cuda"


def cudagraph_skips() -> int:
    """How many times Inductor compiled a graph and then did not record it as a CUDA graph (its counter)."""
    from torch._dynamo.utils import counters  # imported here: dynamo is slow to import, and only CUDA needs it
    return counters["inductor"]["cudagraph_skips"]


def _report_graph_skips(skipped: int) -> None:
    """A skip is otherwise silent (a counter, and a log that is off by default): the step runs as compiled
    kernels, each launched on its own, several times slower than one graph replay."""
    if skipped > 0:
        print(f"warning: the compiled decode step is not running as a CUDA graph ({skipped} skipped); decoding "
              f"launches every kernel on its own, several times slower. TORCH_LOGS=cudagraphs says why",
              flush=True)


def out_of_memory(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from (the compiler wraps what fails inside it), is CUDA
    running out of memory."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _compile_failed(error: Exception) -> None:
    """The compiled step failed (a torch or driver version the CUDA-graph path was not tried on): say so once
    and decode eagerly from then on; same tokens, only slower. Rerunning the failed step is safe whatever
    it had done: it writes the same keys and values to the same slot."""
    global compiled_decode_step
    print(f"warning: the CUDA-graph decode step could not be compiled: {type(error).__name__}: {error}; "
          f"decoding eagerly from now on", flush=True)
    compiled_decode_step = lambda: decode_step  # noqa: E731


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


# -- k completions per problem: evaluation, SFT data, distillation -------------------------------------------

@dataclass
class Sampled:
    problem: Problem
    completions: list[str]
    lengths: list[int] | None = None  # tokens of each completion, stop token excluded


def sample_completions(model, tokenizer, problems: list[Problem], k: int, *, temperature: float, top_p: float,
                       max_new_tokens: int, batch_size: int = 0, seed: int = 0, chat: bool = False,
                       progress: str | None = None, draft_stats: dict | None = None) -> list[Sampled]:
    """k completions for each problem, in the chat format or under the R1-Zero template, batch_size rows
    at a time (0: memory.generation_batch, 256 on the CPU and up to 512 on a GPU). With `progress`, a
    progress bar of that name counts the batches. With draft_stats (a dict), by speculative decoding with
    the MTP draft, counting drafts proposed and accepted in it."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    stop = prompt_ids(tokenizer, "", chat)[1]
    prompts = [prompt_ids(tokenizer, p.question, chat, answer_format(p))[0] for p in problems for _ in range(k)]
    longest = max((len(p) for p in prompts), default=0) + max_new_tokens
    batch_size = generation_batch(model, min(longest, model.cfg.block_size), batch_size)
    seqs: list[list[int]] = []
    for i in tqdm(range(0, len(prompts), batch_size), desc=progress, disable=progress is None, leave=False,
                  dynamic_ncols=True):
        seqs += generate(model, prompts[i:i + batch_size], max_new_tokens, temperature=temperature, top_p=top_p,
                         stop_ids=stop, pad_id=stop[0], generator=gen, speculative=draft_stats is not None,
                         stats=draft_stats)
    seqs = [[t for t in seq if t not in stop] for seq in seqs]
    outs = [tokenizer.decode(seq) for seq in seqs]
    return [Sampled(p, outs[j * k:(j + 1) * k], [len(s) for s in seqs[j * k:(j + 1) * k]])
            for j, p in enumerate(problems)]


def sample_striped(model, tokenizer, problems: list[Problem], k: int, *, seed: int, **options) -> list[Sampled]:
    """sample_completions striped over the ranks under torchrun: rank r samples problems r, r + world, ...
    with its own seed (seed + r), and every rank gets all the samples back in the problems' order."""
    rank = rank_and_world()[0]
    return map_striped(lambda ps: sample_completions(model, tokenizer, ps, k, seed=seed + rank, **options), problems)
