"""Tests for r1mini.model: shapes and loss, causality, the KV cache (with left padding), GQA, RoPE, MoE
routing and balancing, parameter counts, config errors."""

import json
import math
import multiprocessing

import pytest
import torch
import torch.nn.functional as F

from r1mini.distributed import teardown_distributed
from r1mini.model import (MoE, KVCache, ModelConfig, Transformer, apply_rope, model_config, rope_tables)

V = 50
DENSE = dict(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
MOE = dict(DENSE, n_routed_experts=4, moe_top_k=2)


def make_model(seed: int = 0, scale: float = 8.0, **kw) -> Transformer:
    """A random tiny model in eval mode. Weights are scaled up from the 0.02-std init so attention is far
    from uniform and routing far from flat: otherwise a positional or masking bug would barely show."""
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**{**DENSE, **kw}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.mul_(scale)
    return model.eval()


MODELS = {"dense": {}, "moe": {k: MOE[k] for k in ("n_routed_experts", "moe_top_k")},
          "mla": dict(attn="mla"), "mla-moe": dict(attn="mla", n_routed_experts=4, moe_top_k=2)}
# assignment 4 (the KV cache) is graded on the dense model only: the MoE one also runs MoE.route (assignment 12)
KV_KINDS = [pytest.param("dense", marks=pytest.mark.assignment4), "moe", "mla", "mla-moe"]


# -- shapes and loss -----------------------------------------------------------------------------------

def test_shapes_and_loss_match_cross_entropy_by_hand():
    model = make_model(scale=3.0)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(V, (3, 10), generator=g)
    targets = torch.randint(V, (3, 10), generator=g)
    targets[0, :4] = -1
    targets[2, 7] = -1
    logits = model(idx)
    assert logits.shape == (3, 10, V)
    logits2, loss = model(idx, targets)
    assert torch.equal(logits, logits2)
    # by hand: -log softmax at the target, averaged over the positions whose target is not -1
    logp = logits.log_softmax(-1)
    terms = [-logp[b, t, targets[b, t]] for b in range(3) for t in range(10) if targets[b, t] >= 0]
    assert len(terms) == 30 - 5
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    keep = targets >= 0
    assert torch.allclose(loss, F.cross_entropy(logits[keep], targets[keep]), atol=1e-5)
    # the ignored positions really are left out: counting them (as class 0) gives another value
    assert not torch.allclose(loss, model(idx, targets.clamp(min=0))[1], atol=1e-4)


def test_sequence_longer_than_block_size_raises():
    model = make_model()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))


# -- causality -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", MODELS)
def test_causal(kind):
    model = make_model(**MODELS[kind])
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(V, (2, 16), generator=g)
    base = model(idx)
    for t in (0, 5, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 7) % V
        out = model(changed)
        assert torch.allclose(out[:, :t], base[:, :t], atol=1e-6), t
        # and the change does reach position t and later (the check above could not fail otherwise)
        assert (out[:, t:] - base[:, t:]).abs().amax() > 1e-2


# -- KV cache ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KV_KINDS)
def test_kv_cache_matches_full_forward(kind):
    model = make_model(**MODELS[kind])
    g = torch.Generator().manual_seed(3)
    B, T = 2, 14
    idx = torch.randint(V, (B, T), generator=g)
    full = model(idx)
    cache, out = cached_pieces(model, idx, [0, 5, 9])  # prefill in two chunks, then one token at a time
    assert cache.length == T
    assert torch.allclose(out, full, atol=1e-5)
    with pytest.raises(ValueError, match="full"):
        model(idx[:, :1], cache=cache, positions=torch.zeros(B, 1, dtype=torch.long))


def cached_pieces(model, idx: torch.Tensor, chunk_starts: list[int]):
    """The logits of idx run through a fresh KV cache: chunks from each start to the next, then one token at a
    time from the last start on; and the cache."""
    B, T = idx.shape
    cache = KVCache(model.cfg, B, T, "cpu", torch.float32)
    cache.valid[:] = True
    pos = torch.arange(T).expand(B, T)
    bounds = list(zip(chunk_starts, chunk_starts[1:])) + [(t, t + 1) for t in range(chunk_starts[-1], T)]
    return cache, torch.cat([model(idx[:, a:b], cache=cache, positions=pos[:, a:b]) for a, b in bounds], 1)


@pytest.mark.parametrize("options", [dict(attn_bias=True), dict(attn_bias=True, qk_norm=True, attn_head_dim=16)])
def test_kv_cache_matches_full_forward_with_checkpoint_options(options):
    """Decoding stacks wq and wkv into one matmul and rotates q and k together (Attention.decode); training
    runs them apart. With the options of real checkpoints, q/k/v biases (Qwen2) and per-head q/k norms with
    a head size apart from n_embd / n_head (Qwen3), the two must still agree. Biases and norm weights are
    random, so one applied to another head's rows shows."""
    model = make_model(**options)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "q_norm" in name or "k_norm" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    B, T = 2, 12
    idx = torch.randint(V, (B, T), generator=g)
    full = model(idx)
    assert torch.allclose(cached_pieces(model, idx, [0, 6])[1], full, atol=1e-5)
    attn = model.blocks[0].attn  # the stacking really is wq's rows, then wkv's
    x = torch.randn(3, model.cfg.n_embd, generator=g)
    assert torch.allclose(F.linear(x, *attn.decode_weights()[:2]), torch.cat([attn.wq(x), attn.wkv(x)], -1), atol=1e-6)


def test_decoding_layout_holds_the_same_weights_and_goes_away():
    """Transformer.decoding (which generate uses on the CPU) gives each attention and SwiGLU its weights
    stacked and in column-major memory for the block's duration: the same values, the same logits (within
    float rounding: another memory layout is another BLAS kernel), and nothing left after the block, even
    one that raised."""
    model = make_model(**MODELS["moe"])
    B, T = 2, 9
    idx = torch.randint(V, (B, T), generator=torch.Generator().manual_seed(6))

    def cached_logits():
        cache = KVCache(model.cfg, B, T, "cpu", torch.float32)
        cache.valid[:] = True
        return model(idx, cache=cache, positions=torch.arange(T).expand(B, T))

    plain = cached_logits()
    layers = [m for m in model.modules() if hasattr(m, "decode_weights")]
    assert len(layers) == 2 + 1 + 5  # 2 attentions, the dense layer's SwiGLU, the MoE's shared and 4 routed experts
    with model.decoding():
        for m in layers:
            for prepared, weight in zip(m.prepared, m.decode_weights()):
                if weight is not None:  # no q/k/v bias here
                    assert torch.equal(prepared, weight) and (weight.dim() < 2 or prepared.stride(0) == 1)
        assert torch.allclose(cached_logits(), plain, atol=1e-5)
    assert all(m.prepared is None for m in layers)
    with pytest.raises(RuntimeError, match="stop"), model.decoding():
        raise RuntimeError("stop")
    assert all(m.prepared is None for m in layers)


def two_prompts_and_extra_tokens() -> tuple[torch.Generator, list[list[int]], torch.Tensor]:
    """A prompt of 9 tokens and one of 4, and 5 more tokens for each to feed one at a time after the
    prefill; with the generator, for any further random draws."""
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(1, V, (9,), generator=g).tolist(), torch.randint(1, V, (4,), generator=g).tolist()]
    return g, prompts, torch.randint(1, V, (2, 5), generator=g)


def left_padded(prompts, pad_id=0):
    """The batch layout sampling.generate uses: tokens, cache validity, per-sequence positions."""
    P = max(map(len, prompts))
    lengths = torch.tensor([len(p) for p in prompts])
    idx = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        idx[i, P - len(p):] = torch.tensor(p)
    valid = torch.arange(P)[None] >= (P - lengths)[:, None]
    positions = (torch.arange(P)[None] - (P - lengths)[:, None]).clamp(min=0)
    return idx, valid, positions, lengths


@pytest.mark.parametrize("kind", KV_KINDS)
def test_kv_cache_left_padding(kind):
    model = make_model(**MODELS[kind])
    g, prompts, extra = two_prompts_and_extra_tokens()
    idx, valid, positions, lengths = left_padded(prompts)
    P = idx.size(1)
    cache = KVCache(model.cfg, 2, P + extra.size(1), "cpu", torch.float32)
    cache.valid[:, :P] = valid
    last = model(idx, cache=cache, positions=positions)[:, -1]
    got = [last]
    for t in range(extra.size(1)):
        cache.valid[:, P + t] = True
        got.append(model(extra[:, t:t + 1], cache=cache, positions=(lengths + t)[:, None])[:, -1])
    for i, p in enumerate(prompts):
        seq = torch.tensor([p + extra[i].tolist()])
        alone = model(seq)[0]
        want = alone[len(p) - 1:]  # last prompt token, then each extra token
        assert torch.allclose(torch.stack([x[i] for x in got]), want, atol=1e-5), i

    # the padding really is hidden: marking it valid changes the short prompt's result, so the
    # comparison above has the power to fail
    cache2 = KVCache(model.cfg, 2, P, "cpu", torch.float32)
    cache2.valid[:] = True
    leaky = model(idx, cache=cache2, positions=positions)[1, -1]
    assert (leaky - last[1]).abs().amax() > 1e-3
    # RoPE only sees offsets: shifting every real token's position by the same amount changes nothing
    cache3 = KVCache(model.cfg, 2, P, "cpu", torch.float32)
    cache3.valid[:] = valid
    shifted = model(idx, cache=cache3, positions=torch.arange(P).expand(2, P))[1, -1]
    assert torch.allclose(shifted, last[1], atol=1e-5)


@pytest.mark.parametrize("kind", KV_KINDS)
def test_static_decode_step_matches_dynamic(kind):
    """The static step (each token written at a slot given as a tensor, attention over the whole cache under
    a mask) gives the dynamic step's logits, even with garbage in the slots not written yet (a reused cache)."""
    model = make_model(**MODELS[kind])
    g, prompts, extra = two_prompts_and_extra_tokens()
    idx, valid, positions, lengths = left_padded(prompts)
    P = idx.size(1)

    def decode(static: bool, garbage: bool = True) -> torch.Tensor:
        cache = KVCache(model.cfg, 2, model.cfg.block_size if static else P + extra.size(1), "cpu", torch.float32)
        if garbage:
            cache.k.normal_(0, 10, generator=g)
            cache.v.normal_(0, 10, generator=g)
        cache.valid[:, :P] = valid
        logits = [model(idx, cache=cache, positions=positions)[:, -1]]  # prefill: the dynamic write in both
        for t in range(extra.size(1)):
            cache.valid[:, P + t] = True
            slots = torch.tensor([P + t]) if static else None
            logits.append(model(extra[:, t:t + 1], cache=cache, positions=(lengths + t)[:, None], slots=slots)[:, -1])
        assert cache.length == (P if static else P + extra.size(1))  # static writes leave `length` alone
        return torch.stack(logits)
    # the two paths attend over caches of different lengths, which kernels may sum in a different order: equal
    # within float32 rounding, not to the bit (a slot that leaked would move the logits by ~1, as above)
    assert torch.allclose(decode(static=True), decode(static=False), atol=1e-5)
    # the masked slots add exactly 0: one path, one kernel, one shape, garbage or zeros in the unwritten slots
    assert torch.equal(decode(static=True), decode(static=True, garbage=False))


# -- grouped-query attention ---------------------------------------------------------------------------

def reference_attention(attn, x, cos, sin):
    """Causal multi-head attention written out: query head h uses K/V head h // (n_head / n_kv_head)."""
    cfg = attn.cfg
    B, T, C = x.shape
    hd, rep = cfg.head_dim, cfg.n_head // cfg.n_kv_head
    q = (x @ attn.wq.weight.t()).view(B, T, cfg.n_head, hd).transpose(1, 2)
    kv = (x @ attn.wkv.weight.t()).view(B, T, 2, cfg.n_kv_head, hd)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    heads = []
    causal = torch.ones(T, T).tril().bool()
    for h in range(cfg.n_head):
        kh, vh = k[:, h // rep], v[:, h // rep]
        scores = q[:, h] @ kh.transpose(-1, -2) / math.sqrt(hd)
        heads.append(scores.masked_fill(~causal, float("-inf")).softmax(-1) @ vh)
    y = torch.stack(heads, 1).transpose(1, 2).reshape(B, T, C)
    return y @ attn.wo.weight.t()


def test_gqa_attention_matches_reference():
    model = make_model(n_head=4, n_kv_head=2)
    attn = model.blocks[0].attn
    x = torch.randn(2, 11, 32, generator=torch.Generator().manual_seed(5))
    cos, sin = model.rope_cos[:11][None, None], model.rope_sin[:11][None, None]
    with torch.no_grad():
        assert torch.allclose(attn(x, cos, sin), reference_attention(attn, x, cos, sin), atol=1e-5)


def test_gqa_equals_mha_with_tiled_kv_weights():
    gqa = make_model(seed=6, n_head=4, n_kv_head=2)
    mha = Transformer(ModelConfig(**{**DENSE, "n_head": 4, "n_kv_head": 4})).eval()
    state = gqa.state_dict()
    hd = gqa.cfg.head_dim
    for name, w in list(state.items()):
        if name.endswith("wkv.weight"):  # rows: (k or v, kv head, head dim); repeat each kv head twice
            state[name] = w.view(2, 2, hd, -1).repeat_interleave(2, dim=1).reshape(2 * 4 * hd, -1)
    mha.load_state_dict(state)
    idx = torch.randint(V, (2, 12), generator=torch.Generator().manual_seed(7))
    assert torch.allclose(gqa(idx), mha(idx), atol=1e-5)
    # tiling the heads the other way (repeat instead of repeat_interleave) is a different model
    for name, w in gqa.state_dict().items():
        if name.endswith("wkv.weight"):
            state[name] = w.view(2, 2, hd, -1).repeat(1, 2, 1, 1).reshape(2 * 4 * hd, -1)
    mha.load_state_dict(state)
    assert (gqa(idx) - mha(idx)).abs().amax() > 1e-3


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("n_head, n_kv_head", [(8, 2), (4, 4)])
def test_attention_over_the_cache_matches_every_head_by_hand(T, n_head, n_kv_head):
    """attend_to_cache folds the query heads that share a K/V head into the query axis: each head g*rep + r must
    still see its own K/V head g = h // rep (what repeat_interleave gives), and each new token its own mask
    row (T = 2: speculative decoding's token and draft), with slots hidden per row."""
    from r1mini.model import attend_to_cache
    g = torch.Generator().manual_seed(0)
    B, S, D = 3, 9, 8
    q, k, v = torch.randn(B, n_head, T, D, generator=g), *torch.randn(2, B, n_kv_head, S, D, generator=g)
    mask = torch.rand(B, 1, T, S, generator=g) < 0.6
    mask[..., 0] = True  # every row sees at least one slot
    rep = n_head // n_kv_head
    kk, vv = k.repeat_interleave(rep, 1).double(), v.repeat_interleave(rep, 1).double()
    scores = (q.double() @ kk.transpose(-1, -2)) / math.sqrt(D)
    want = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ vv
    assert torch.allclose(attend_to_cache(q, k, v, mask).double(), want, atol=1e-5)


def test_decoding_attention_needs_no_grouped_query_kernel(monkeypatch):
    """CUDA's fused attention kernels take a decoding step only if SDPA is asked for plain multi-head attention
    under a mask: with enable_gqa the flash kernel is ruled out by the mask and, in several torch releases,
    the memory-efficient one by the GQA, and the math path then copies the cache's keys and values to every
    head in every layer at every step. Every SDPA call of a cached forward must have as many query heads as
    key heads, and no enable_gqa."""
    import r1mini.model as model_module
    model = make_model(n_head=4, n_kv_head=2).eval()
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append((q.size(1), k.size(1), kwargs.get("enable_gqa", False)))
        return sdpa(q, k, v, *args, **kwargs)
    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention", spy)
    from r1mini.sampling import generate
    for static in (False, True):
        generate(model, [[1, 2, 3], [4]], 3, temperature=0, static=static)
    assert calls and all(q_heads == k_heads and not gqa for q_heads, k_heads, gqa in calls)


# -- RoPE ----------------------------------------------------------------------------------------------

@pytest.mark.assignment6
def test_rope_tables_by_hand():
    cos, sin = rope_tables(8, 20, 10000.0)
    assert cos.shape == sin.shape == (20, 4)
    for pos, i in [(0, 0), (3, 1), (19, 3)]:
        angle = pos * 10000.0 ** (-2 * i / 8)
        assert cos[pos, i].item() == pytest.approx(math.cos(angle), abs=1e-6)
        assert sin[pos, i].item() == pytest.approx(math.sin(angle), abs=1e-6)


@pytest.mark.assignment6
def test_apply_rope_pairs_dimension_i_with_i_plus_half():
    """The rotate-half layout apply_rope's docstring states: e_i at angle a_i becomes cos a_i e_i + sin a_i
    e_{i+D/2}, and e_{i+D/2} becomes -sin a_i e_i + cos a_i e_{i+D/2} (an interleaved layout moves e_{2i})."""
    D, pos = 8, 3
    cos, sin = rope_tables(D, 8, 100.0)
    for i in range(D // 2):
        basis = torch.eye(D)[[i, i + D // 2]].view(2, 1, 1, D)  # e_i and e_{i+D/2}, as two (1, 1, D) heads
        y = apply_rope(basis, cos[pos].view(1, 1, 1, -1), sin[pos].view(1, 1, 1, -1)).view(2, D)
        c, s_ = cos[pos, i].item(), sin[pos, i].item()
        want = torch.zeros(2, D)
        want[0, i], want[0, i + D // 2], want[1, i], want[1, i + D // 2] = c, s_, -s_, c
        assert abs(s_) > 0.01 and torch.allclose(y, want, atol=1e-6), i


@pytest.mark.assignment6
def test_rope_preserves_pair_norms_and_is_relative():
    D = 16
    cos, sin = rope_tables(D, 64, 10000.0)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 10, D, generator=g)
    y = apply_rope(x, cos[None, None, 5:15], sin[None, None, 5:15])
    pair_norm = lambda t: (t[..., :D // 2] ** 2 + t[..., D // 2:] ** 2).sqrt()  # the rotate-half pairs
    assert torch.allclose(pair_norm(y), pair_norm(x), atol=1e-5)
    assert not torch.allclose(y, x, atol=1e-3)

    q, k = torch.randn(D, generator=g), torch.randn(D, generator=g)
    at = lambda v, p: apply_rope(v.view(1, 1, 1, D), cos[p].view(1, 1, 1, -1), sin[p].view(1, 1, 1, -1)).flatten()
    dot = lambda m, n: torch.dot(at(q, m), at(k, n)).item()
    assert dot(7, 3) == pytest.approx(dot(40, 36), abs=1e-4)
    assert dot(9, 9) == pytest.approx(dot(0, 0), abs=1e-4) == pytest.approx(torch.dot(q, k).item(), abs=1e-4)
    assert abs(dot(7, 3) - dot(7, 4)) > 1e-3  # different offsets, different scores


# -- MoE -----------------------------------------------------------------------------------------------

def small_moe(**kw) -> MoE:
    cfg = ModelConfig(vocab_size=10, block_size=8, n_layer=2, n_head=2, n_kv_head=1, n_embd=8,
                      n_routed_experts=4, moe_top_k=2, **kw)
    moe = MoE(cfg)
    torch.manual_seed(0)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.5)
    with torch.no_grad():
        moe.centroids.copy_(torch.eye(4, 8))  # u . e_i = u_i: the first 4 coordinates are the affinities
    return moe


@pytest.mark.assignment12
def test_moe_route_by_hand():
    moe = small_moe()
    x = torch.zeros(2, 8)
    x[0, :4] = torch.tensor([3.0, 1.0, -1.0, 2.0])
    x[1, :4] = torch.tensor([-2.0, 0.5, 4.0, 0.0])
    s = torch.sigmoid(x[:, :4])
    chosen, gates = moe.route(x)
    expect = [[0, 3], [2, 1]]
    for n in range(2):
        assert sorted(chosen[n].tolist()) == sorted(expect[n])
        a, b = expect[n]
        want = {a: s[n, a] / (s[n, a] + s[n, b]), b: s[n, b] / (s[n, a] + s[n, b])}
        for e, gt in zip(chosen[n].tolist(), gates[n]):
            assert gt.item() == pytest.approx(want[e].item(), abs=1e-6)
    assert torch.allclose(gates.sum(-1), torch.ones(2))

    # the bias changes which experts win, but the gates still come from the unbiased scores
    moe.bias.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    chosen, gates = moe.route(x)
    assert sorted(chosen[0].tolist()) == [0, 1]  # s1 + 1 = 1.73 beats s3 = 0.88
    g = dict(zip(chosen[0].tolist(), gates[0].tolist()))
    assert g[1] == pytest.approx((s[0, 1] / (s[0, 0] + s[0, 1])).item(), abs=1e-6)
    assert g[0] == pytest.approx((s[0, 0] / (s[0, 0] + s[0, 1])).item(), abs=1e-6)
    assert sorted(chosen[1].tolist()) == [1, 2]


@pytest.mark.assignment12
def test_moe_update_bias():
    moe = small_moe(moe_bias_update=0.25)
    moe.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
    moe.load.copy_(torch.tensor([10.0, 2.0, 6.0, 6.0]))  # mean 6: over, under, exactly, exactly
    frac = moe.update_bias()
    assert torch.allclose(moe.bias, torch.tensor([-0.25, 1.25, -1.0, 0.5]))
    assert torch.allclose(frac, torch.tensor([10.0, 2.0, 6.0, 6.0]) / 24)
    assert torch.equal(moe.load, torch.zeros(4))


def _moe_bias_worker(rank: int, store: str):
    """One of 2 gloo ranks: its own MoE load, one bias update, the outcome written beside the store file."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    moe = small_moe(moe_bias_update=0.25)
    moe.load.copy_(torch.tensor([[6.0, 0.0, 1.0, 1.0], [0.0, 6.0, 1.0, 1.0]][rank]))  # each rank's own tokens
    frac = moe.update_bias()
    with open(f"{store}.{rank}", "w") as f:
        json.dump([moe.bias.tolist(), frac.tolist(), moe.load.tolist()], f)
    teardown_distributed()


@pytest.mark.assignment12
def test_moe_bias_update_sums_the_load_over_ranks(tmp_path):
    """Summed over the 2 ranks the load is [6, 6, 2, 2] (mean 4): both replicas lower experts 0 and 1 and raise
    2 and 3. Each rank's own load alone would move them apart (rank 0 would raise expert 1, rank 1 expert 0)."""
    store = str(tmp_path / "store")
    # forked where the OS can (0.2 s): a spawned rank imports torch afresh (9 s on a busy 2-core machine)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    torch.multiprocessing.start_processes(_moe_bias_worker, args=(store,), nprocs=2, start_method=method)
    want = [[-0.25, -0.25, 0.25, 0.25], [6 / 16, 6 / 16, 2 / 16, 2 / 16], [0.0] * 4]
    for rank in range(2):
        with open(f"{store}.{rank}") as f:
            assert json.load(f) == [pytest.approx(w) for w in want], rank


def test_moe_load_counted_in_train_mode_only():
    moe = small_moe()
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(9))
    moe.train()
    moe(x)
    chosen, _ = moe.route(x.reshape(-1, 8))
    assert torch.equal(moe.load, torch.bincount(chosen.flatten(), minlength=4).float())
    assert moe.load.sum() == 15 * 2
    moe.eval()
    before = moe.load.clone()
    moe(x)
    assert torch.equal(moe.load, before)


def test_moe_forward_equals_hand_loop():
    moe = small_moe()
    with torch.no_grad():
        moe.centroids.normal_(std=1.0)
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        out = moe.eval()(x)
        flat = x.reshape(-1, 8)
        chosen, gates = moe.route(flat)
        rows = []
        for n in range(flat.size(0)):
            y = moe.shared(flat[n])
            for e, gt in zip(chosen[n].tolist(), gates[n]):
                y = y + gt * moe.experts[e](flat[n])
            rows.append(y)
    assert len(set(chosen.flatten().tolist())) > 1  # routing is not degenerate
    assert torch.allclose(out, torch.stack(rows).view(2, 6, 8), atol=1e-5)
    # the static dispatch of a decode step (every expert on every token, times a gate that is 0 where not chosen)
    assert torch.allclose(moe(x, static=True), out, atol=1e-6)


# -- parameter counts, tying, config errors ------------------------------------------------------------

def test_num_params_by_hand():
    C, L, hd, Vv = 32, 2, 8, V
    ffn = 32 * math.ceil(8 * C / 3 / 32)  # 96
    block = C + C * C + C * 2 * 2 * hd + C * C + C + 3 * C * ffn  # norms, wq, wkv, wo, SwiGLU
    dense = Transformer(ModelConfig(**DENSE))
    assert dense.cfg.ffn_hidden == ffn == 96
    assert dense.num_params() == Vv * C + L * block + C
    assert dense.num_params(exclude_embeddings=True) == L * block + C
    untied = Transformer(ModelConfig(**DENSE, tie_embeddings=False))
    assert untied.num_params() == 2 * Vv * C + L * block + C

    moe = Transformer(ModelConfig(**MOE))
    h = moe.cfg.moe_hidden
    assert h == 96 // 3
    moe_block = C + C * C + C * 2 * 2 * hd + C * C + C + 3 * C * h + 4 * 3 * C * h + 4 * C  # shared, experts, centroids
    assert moe.num_params() == Vv * C + block + moe_block + C
    per_expert = 3 * C * h
    assert moe.flops_per_token() == 6 * (block + moe_block + C - 2 * per_expert) + 12 * L * C * 32


def test_tied_embeddings_share_storage():
    model = Transformer(ModelConfig(**DENSE))
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    untied = Transformer(ModelConfig(**DENSE, tie_embeddings=False))
    assert untied.lm_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()


def test_config_errors():
    with pytest.raises(ValueError, match="divide"):
        ModelConfig(n_embd=30, n_head=4, n_kv_head=2)
    with pytest.raises(ValueError, match="divide"):
        ModelConfig(n_embd=32, n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="even"):
        ModelConfig(n_embd=24, n_head=8, n_kv_head=4)  # head size 3
    with pytest.raises(ValueError, match="moe_top_k"):
        ModelConfig(n_routed_experts=2, moe_top_k=3)
    with pytest.raises(ValueError, match="unknown model preset"):
        model_config("nope")
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "bogus": 1})
    cfg = model_config("toy", vocab_size=77)
    assert (cfg.n_embd, cfg.n_layer, cfg.vocab_size) == (32, 2, 77)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    """checkpoint_blocks recomputes each block in backward: the same numbers, dense and MoE alike."""
    for moe in (0, 4):
        torch.manual_seed(0)
        model = Transformer(model_config("toy", vocab_size=50, n_routed_experts=moe))
        idx = torch.randint(0, 50, (2, 24))
        grads = []
        for on in (False, True):
            model.zero_grad()
            model.checkpoint_blocks = on
            _, loss = model(idx, idx)
            loss.backward()
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
        assert len(grads[0]) == len(grads[1]) > 0
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
