"""Tests for speculative decoding with the MTP draft (r1mini.sampling.decode_speculative): at temperature 0
the tokens are the greedy ones, with drafts accepted and rejected; at temperature 1 the sequences follow the
model's own distribution (a chi-square test against the exact distribution, computed by enumeration)."""

import functools
import math

import pytest
import torch

from conftest import assert_same_greedy
from r1mini import sampling
from r1mini.model import ModelConfig, Transformer
from r1mini.sampling import generate, generate_no_cache

BASE = dict(block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, tie_embeddings=False, mtp_depth=1)
KINDS = {"dense": {}, "mla": dict(attn="mla"), "moe": dict(n_routed_experts=4, moe_top_k=2)}
PROMPTS = [[5, 9, 3], [7, 1, 2, 8, 30, 4, 11], [17], [3, 3, 21, 6, 9]]


def random_model(vocab_size: int = 40, scale: float = 5.0, seed: int = 1, **kw) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(vocab_size=vocab_size, **{**BASE, **kw}))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(scale)
    return model.eval()


@functools.cache
def trained_model(kind: str = "dense") -> Transformer:
    """A tiny model and its MTP module trained (a second) on t_{i+1} = t_i + 3 mod 40: its drafts are
    mostly right."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=40, **{**BASE, **KINDS[kind]}))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        seq = (torch.randint(40, (8, 1), generator=g) + 3 * torch.arange(17)) % 40
        _, loss = model(seq[:, :-1], seq[:, 1:], mtp_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.assignment15
@pytest.mark.parametrize("kind", KINDS)
def test_greedy_speculative_equals_greedy(kind):
    acceptance = []
    for model in (random_model(**KINDS[kind]), trained_model(kind)):
        stats = {}
        got = generate(model, PROMPTS, 14, temperature=0, speculative=True, stats=stats)
        assert_same_greedy(model, PROMPTS, got, generate(model, PROMPTS, 14, temperature=0))
        assert_same_greedy(model, PROMPTS, got, [generate_no_cache(model, p, 14) for p in PROMPTS])
        assert 0 < stats["drafted"] <= 4 * 14
        acceptance.append(stats["accepted"] / stats["drafted"])
    assert acceptance[0] < 0.5 < acceptance[1]  # random drafts mostly rejected, trained ones mostly kept


def test_speculative_stops_at_a_stop_token_and_at_block_size():
    model = trained_model()
    plain = generate(model, PROMPTS, 12, temperature=0)
    stop = plain[1][4]
    got = generate(model, PROMPTS, 12, temperature=0, speculative=True, stop_ids=[stop])
    assert got == generate(model, PROMPTS, 12, temperature=0, stop_ids=[stop])
    assert got[1][-1] == stop and len(got[1]) <= 5
    # most rows stop early: they are dropped from the batch and the cache, and the others go on unchanged
    got = generate(model, PROMPTS, 12, temperature=0, speculative=True, stop_ids=[18, 20])
    assert got == generate(model, PROMPTS, 12, temperature=0, stop_ids=[18, 20])
    assert sum(len(g) < 6 for g in got) >= 3 and len({len(g) for g in got}) > 1, got  # stopped at different steps
    long = generate(model, [list(range(20))], 100, temperature=0, speculative=True)
    assert long == generate(model, [list(range(20))], 100, temperature=0) and len(long[0]) == 32 - 20


def test_speculative_needs_an_mtp_module():
    model = random_model(mtp_depth=0)
    with pytest.raises(ValueError, match="pretrain one with mtp_depth 1"):
        generate(model, PROMPTS, 4, speculative=True)
    with pytest.raises(ValueError, match="temperature"):
        generate(random_model(), PROMPTS, 4, temperature=-1, speculative=True)


def chi_square(counts: torch.Tensor, probs: torch.Tensor, n: int) -> tuple[float, int]:
    """Pearson's statistic and its degrees of freedom; cells expected below 5 are pooled into one."""
    expected = probs * n
    small = expected < 5
    obs = torch.cat([counts[~small], counts[small].sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    keep = exp > 0
    return float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()), int(keep.sum()) - 1


def chi_square_critical(df: int, z: float = 3.0902) -> float:
    """The chi-square quantile by Wilson and Hilferty's approximation; z = 3.0902 is the normal 0.999
    quantile, so a correct sampler fails the test with probability 0.001."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.assignment15
def test_sampled_speculative_matches_the_model_distribution():
    """8,000 continuations of 3 tokens over a 4-token vocabulary: the first comes from the prefill, the
    second from an accepted draft or the residual, the third from the bonus distribution p2 or a plain step.
    Their 64 joint frequencies are checked against the exact probabilities (by enumeration) with a
    chi-square test at a false-alarm rate of 0.001 (fixed seed, so it passes or fails the same every run)."""
    V, N, prompt = 4, 8000, [1, 3, 0, 2]
    model = random_model(vocab_size=V, scale=4.0, seed=3)
    stats = {}
    out = generate(model, [prompt] * N, 3, temperature=1.0, speculative=True, stats=stats,
                   generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(torch.tensor([a * V * V + b * V + c for a, b, c in out]), minlength=V ** 3).float()
    seqs = torch.tensor([prompt + [a, b, c] for a in range(V) for b in range(V) for c in range(V)])
    with torch.no_grad():
        logp = model(seqs[:, :-1]).log_softmax(-1)
    exact = logp[:, 3:].gather(-1, seqs[:, 4:, None])[..., 0].sum(-1).exp()  # p(a) p(b | a) p(c | a, b)
    stat, df = chi_square(counts, exact, N)
    assert stat < chi_square_critical(df), (stat, df)
    assert 0.2 < stats["accepted"] / stats["drafted"] < 0.9  # both branches ran many times
    # power: the same test rejects a plausible bug's distribution (sampling at temperature 1.3)
    wrong = (logp[:, 3:] / 1.3).log_softmax(-1).gather(-1, seqs[:, 4:, None])[..., 0].sum(-1).exp()
    assert chi_square(counts, wrong, N)[0] > chi_square_critical(df)


def test_greedy_speculative_under_cuda_emulation(monkeypatch):
    """The bf16 cache and autocast of the CUDA paths: the same tokens as the plain (static) decode there."""
    monkeypatch.setenv("R1MINI_EMULATE_CUDA", "1")
    for kind in ("dense", "mla"):
        model = trained_model(kind)
        assert generate(model, PROMPTS, 10, temperature=0, speculative=True) == generate(model, PROMPTS, 10,
                                                                                         temperature=0)


@pytest.mark.assignment15
def test_accept_draft_by_hand():
    """p = (0.5, 0.3, 0.2), q = (0.2, 0.6, 0.2): a draft of token 0 is always kept (p >= q), of token 1 kept
    with probability 0.3 / 0.6 = 0.5, and a rejection resamples from max(0, p - q) = (0.3, 0, 0): token 0."""
    p = torch.tensor([[0.5, 0.3, 0.2]]).expand(20_000, 3)
    q = torch.tensor([[0.2, 0.6, 0.2]]).expand(20_000, 3)
    g = torch.Generator().manual_seed(0)
    accept, resampled = sampling.accept_draft(p, q, torch.zeros(20_000, dtype=torch.long), g)
    assert accept.all()
    accept, resampled = sampling.accept_draft(p, q, torch.ones(20_000, dtype=torch.long), g)
    assert abs(accept.float().mean().item() - 0.5) < 0.015  # 4.2 standard errors (0.0035 each)
    assert (resampled[~accept] == 0).all()
    # the whole rule: draft from q, keep or resample, gives p (counts within 4.5 standard errors)
    draft = sampling.sample_from(q, g)
    accept, resampled = sampling.accept_draft(p, q, draft, g)
    freq = torch.bincount(torch.where(accept, draft, resampled), minlength=3).float() / 20_000
    assert torch.allclose(freq, p[0], atol=4.5 * math.sqrt(0.25 / 20_000))
    # equal distributions: every draft is kept
    assert sampling.accept_draft(p, p, sampling.sample_from(p, g), g)[0].all()
