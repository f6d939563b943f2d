"""Tests for DeepSeek-V3's options in r1mini.model: multi-head latent attention (its latent KV cache, the
absorbed decode, RoPE on the decoupled key only) and multi-token prediction (the loss by hand; a model
without MTP is unchanged). The KV-cache tests of tests/test_model.py run on MLA models too."""

import math

import pytest
import torch
import torch.nn.functional as F

from r1mini.model import KVCache, LatentAttention, ModelConfig, Transformer, apply_rope

V = 50
MLA = dict(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, attn="mla", kv_lora_rank=12,
           q_lora_rank=20, qk_nope_head_dim=6, qk_rope_head_dim=4, v_head_dim=10)  # every size a different number


def make_model(seed: int = 0, scale: float = 6.0, **kw) -> Transformer:
    """A random tiny model in eval mode, weights scaled up so attention is far from uniform."""
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**{**MLA, **kw}))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(scale)
    return model.eval()


@pytest.fixture
def naive_decode(monkeypatch):
    """Decoding that expands every cached latent into per-head keys and values (no absorption)."""
    monkeypatch.setattr(LatentAttention, "absorb", False)


# -- multi-head latent attention -------------------------------------------------------------------------

def reference_mla(attn: LatentAttention, x: torch.Tensor, cos, sin) -> torch.Tensor:
    """Causal MLA written out from DeepSeek-V2's equations, one head and one query at a time."""
    cfg = attn.cfg
    B, T, _ = x.shape
    nope, rope, dv = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    c_q = attn.q_norm(x @ attn.wq_a.weight.t())  # c_t^Q = W^DQ h_t
    q = (c_q @ attn.wq_b.weight.t()).view(B, T, cfg.n_head, nope + rope)
    kv_a = x @ attn.wkv_a.weight.t()
    c_kv = attn.kv_norm(kv_a[..., :cfg.kv_lora_rank])  # c_t^KV = W^DKV h_t
    k_pe = apply_rope(kv_a[..., None, cfg.kv_lora_rank:].transpose(1, 2), cos, sin)[:, 0]  # k_t^R, (B, T, rope)
    kv = (c_kv @ attn.wkv_b.weight.t()).view(B, T, cfg.n_head, nope + dv)  # k_t^C = W^UK c_t, v_t^C = W^UV c_t
    out = torch.zeros(B, T, cfg.n_head, dv)
    for h in range(cfg.n_head):
        q_pe = apply_rope(q[:, :, h, None, nope:].transpose(1, 2), cos, sin)[:, 0]
        q_h = torch.cat([q[:, :, h, :nope], q_pe], -1)
        k_h = torch.cat([kv[:, :, h, :nope], k_pe], -1)
        for t in range(T):
            scores = (k_h[:, :t + 1] @ q_h[:, t, :, None])[..., 0] / math.sqrt(nope + rope)  # (B, t + 1)
            out[:, t, h] = (scores.softmax(-1)[..., None] * kv[:, :t + 1, h, nope:]).sum(1)
    return out.reshape(B, T, -1) @ attn.wo.weight.t()


def test_mla_attention_matches_the_equations():
    model = make_model()
    attn = model.blocks[0].attn
    x = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(1))
    cos, sin = model.rope_cos[:9][None, None], model.rope_sin[:9][None, None]
    with torch.no_grad():
        assert torch.allclose(attn(x, cos, sin), reference_mla(attn, x, cos, sin), atol=1e-4)


def decode_one_by_one(model: Transformer, idx: torch.Tensor, prefill: int) -> tuple[torch.Tensor, KVCache]:
    """Logits of every position: a prefill of `prefill` tokens, then one token at a time through the cache."""
    B, T = idx.shape
    cache = KVCache(model.cfg, B, T, "cpu", torch.float32)
    cache.valid[:] = True
    pos = torch.arange(T).expand(B, T)
    pieces = [model(idx[:, :prefill], cache=cache, positions=pos[:, :prefill])]
    pieces += [model(idx[:, t:t + 1], cache=cache, positions=pos[:, t:t + 1]) for t in range(prefill, T)]
    return torch.cat(pieces, 1), cache


@pytest.mark.assignment13
@pytest.mark.parametrize("moe", [False, True])
def test_absorbed_decode_matches_full_forward(moe):
    model = make_model(**(dict(n_routed_experts=4, moe_top_k=2) if moe else {}))
    idx = torch.randint(V, (2, 13), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(idx)
        got, _ = decode_one_by_one(model, idx, prefill=4)
    assert torch.allclose(got, full, atol=1e-4)
    assert (full[:, 1:] - full[:, :-1]).abs().amax() > 1e-1  # positions differ: the comparison can fail


@pytest.mark.assignment13
def test_naive_decode_matches_full_forward_and_the_absorbed_one(naive_decode):
    model = make_model()
    idx = torch.randint(V, (2, 13), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        naive, _ = decode_one_by_one(model, idx, prefill=4)
        assert torch.allclose(naive, model(idx), atol=1e-4)
        LatentAttention.absorb = True  # monkeypatch restores False -> the class default afterwards
        absorbed, _ = decode_one_by_one(model, idx, prefill=4)
    assert torch.allclose(naive, absorbed, atol=1e-4)


@pytest.mark.assignment13
def test_absorbed_decode_never_expands_the_latent(monkeypatch):
    """The absorbed step must not run W_UK / W_UV as a layer over the cache: wkv_b is never called."""
    model = make_model()
    idx = torch.randint(V, (1, 8), generator=torch.Generator().manual_seed(4))
    calls = []
    for block in model.blocks:
        block.attn.wkv_b.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    with torch.no_grad():
        decode_one_by_one(model, idx, prefill=3)
    assert calls == []
    model(idx)  # the training form does expand (so the hook above can see a call)
    assert len(calls) == 2


def test_cache_holds_only_the_latent_and_the_rope_key():
    model = make_model()
    cfg = model.cfg
    _, cache = decode_one_by_one(model, torch.randint(V, (3, 10)), prefill=4)
    per_token_and_layer = (cache.k.numel() + cache.v.numel()) / (cfg.n_layer * 3 * 10)
    assert per_token_and_layer == cfg.kv_lora_rank + cfg.qk_rope_head_dim == 16
    gqa = KVCache(ModelConfig(**{**MLA, "attn": "gqa"}), 3, 10, "cpu", torch.float32)
    assert (gqa.k.numel() + gqa.v.numel()) / (cfg.n_layer * 3 * 10) == 2 * cfg.n_kv_head * cfg.head_dim == 32


def test_rope_only_on_the_decoupled_key():
    """The same tokens cached at two positions: the latents are equal (no position in them), the RoPE keys
    are the same raw key rotated by each position's angle."""
    model = make_model()
    cfg = model.cfg
    idx = torch.randint(V, (1, 6), generator=torch.Generator().manual_seed(5))
    caches = []
    for start in (0, 11):
        cache = KVCache(cfg, 1, 6, "cpu", torch.float32)
        cache.valid[:] = True
        with torch.no_grad():
            model(idx, cache=cache, positions=torch.arange(start, start + 6)[None])
        caches.append(cache)
    assert torch.equal(caches[0].k[0], caches[1].k[0])  # layer 0's latents c_kv
    assert (caches[0].v[0] - caches[1].v[0]).abs().amax() > 1e-2  # its RoPE keys differ
    with torch.no_grad():  # layer 0's input, its raw RoPE key, rotated at positions 11..16
        raw = model.blocks[0].attn.wkv_a(model.blocks[0].attn_norm(model.tok_emb(idx)))[..., cfg.kv_lora_rank:]
        cos, sin = model.rope_cos[11:17][None, None], model.rope_sin[11:17][None, None]
        assert torch.allclose(caches[1].v[0], apply_rope(raw[:, None], cos, sin), atol=1e-5)
    assert model.rope_cos.shape[1] == cfg.qk_rope_head_dim // 2  # tables of the decoupled size only


def test_mla_config_derives_sizes_and_rejects_bad_ones():
    cfg = ModelConfig(n_embd=64, n_head=4, n_kv_head=2, attn="mla")
    assert (cfg.q_lora_rank, cfg.kv_lora_rank, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim) == \
        (32, 32, 16, 8, 16)
    with pytest.raises(ValueError, match="attn"):
        ModelConfig(attn="mqa")
    with pytest.raises(ValueError, match="qk_rope_head_dim"):
        ModelConfig(attn="mla", qk_rope_head_dim=3)
    with pytest.raises(ValueError, match="mtp_depth"):
        ModelConfig(mtp_depth=-1)


# -- multi-token prediction ------------------------------------------------------------------------------

def test_mtp_off_leaves_the_model_unchanged():
    """No MTP module: the same parameters (and checkpoint keys) as a model without the option, and a model
    with MTP has exactly those main weights plus its modules', from the same seed."""
    torch.manual_seed(0)
    plain = Transformer(ModelConfig(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32))
    torch.manual_seed(0)
    with_mtp = Transformer(ModelConfig(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                                       mtp_depth=2))
    assert not any(k.startswith("mtp") for k in plain.state_dict())
    mtp_keys = {k for k in with_mtp.state_dict() if k.startswith("mtp.")}
    assert {k.split(".")[1] for k in mtp_keys} == {"0", "1"}
    main = {k: v for k, v in with_mtp.state_dict().items() if k not in mtp_keys}
    assert main.keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in main.items())
    idx = torch.randint(V, (2, 10))
    assert torch.equal(plain(idx), with_mtp(idx))  # the modules never touch the main prediction
    old = {k: v for k, v in plain.cfg.to_dict().items() if k not in ("attn", "q_lora_rank", "kv_lora_rank",
           "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "mtp_depth")}
    assert ModelConfig.from_dict(old) == plain.cfg  # a model.json written before these options still loads


@pytest.mark.assignment14
def test_mtp_loss_by_hand():
    """D = 2 on a tiny model: L_k from the modules run by hand on explicitly built inputs."""
    torch.manual_seed(1)
    model = Transformer(ModelConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                                    mtp_depth=2, tie_embeddings=False))
    g = torch.Generator().manual_seed(6)
    seq = torch.randint(V, (2, 9), generator=g)  # t_0 .. t_8
    idx, targets = seq[:, :-1], seq[:, 1:]  # T = 8
    h0 = model.trunk(idx)
    want, h = [], h0
    for k in (1, 2):
        module, n = model.mtp[k - 1], 8 - k
        emb = model.tok_emb.weight[seq[:, k:k + n]]  # Emb(t_{i+k}) for i = 0 .. n-1
        x = torch.cat([module.h_norm(h[:, :n]), module.emb_norm(emb)], -1) @ module.proj.weight.t()
        h = module.block(x, model.rope_cos[:n], model.rope_sin[:n])
        logp = (module.norm(h) @ model.lm_head.weight.t()).log_softmax(-1)
        labels = seq[:, k + 1:k + 1 + n]  # t_{i+k+1}
        want.append(-logp.gather(-1, labels[..., None]).mean())
    got = model.mtp_losses(h0, targets)
    assert torch.allclose(torch.stack(got), torch.stack(want), atol=1e-5)
    main = F.cross_entropy(model(idx).reshape(-1, V), targets.reshape(-1))
    _, total = model(idx, targets, mtp_weight=0.3)
    assert torch.allclose(total, main + 0.3 * (want[0] + want[1]) / 2, atol=1e-5)  # L + lambda / D sum_k L_k
    # a shifted target (predicting t_{i+k} instead of t_{i+k+1}) gives another value
    shifted = model.head(model.mtp[0].norm(model.mtp[0](h0[:, :7], model.tok_emb(seq[:, 1:8]), model.rope_cos[:7],
                                                        model.rope_sin[:7])))
    assert abs(want[0].item() - F.cross_entropy(shifted.reshape(-1, V), seq[:, 1:8].reshape(-1)).item()) > 1e-3


@pytest.mark.assignment14
def test_mtp_ignores_positions_without_a_target():
    torch.manual_seed(2)
    model = Transformer(ModelConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_kv_head=1, n_embd=16,
                                    mtp_depth=1))
    seq = torch.randint(V, (1, 9), generator=torch.Generator().manual_seed(7))
    targets = seq[:, 1:].clone()
    targets[0, 3] = -1  # t_4 unknown: depth 1 cannot take it as input (position 3) nor predict it (position 2)
    h = model.trunk(seq[:, :-1])
    one = model.mtp[0]
    logits = model.head(one.norm(one(h[:, :7], model.tok_emb(targets[:, :7].clamp(min=0)), model.rope_cos[:7],
                                     model.rope_sin[:7])))
    keep = [0, 1, 4, 5, 6]
    want = F.cross_entropy(logits[0, keep], targets[0, 1:8][keep])
    assert torch.allclose(model.mtp_losses(h, targets)[0], want, atol=1e-6)
    with pytest.raises(ValueError, match="no MTP modules"):
        Transformer(ModelConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_kv_head=1, n_embd=16)) \
            .mtp_losses(h, targets)
