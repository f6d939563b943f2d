"""Tests for r1mini.grpo against hand-computed numbers: group advantages, the GRPO loss under each
aggregation and what each aggregation divides by, clipping (symmetric and clip-higher), the k3 KL, gradients
at masked / clipped / active tokens, the diagnostics, and per-token log-probs of a tiny model against a
token-by-token recomputation. The RL loop that uses them (rollout, update, step) is tested in test_rl.py."""

import math

import pytest
import torch

from r1mini.grpo import aggregation_count, entropy_from_logits, group_advantages, grpo_loss, sequence_logprobs
from r1mini.model import Transformer, model_config


def leaf(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, requires_grad=True)


def grad_of(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, x)
    return g


# ----------------------------------------------------------------------------- group_advantages

def test_group_advantages_std_hand_example():
    # group 1: mean 0.5, population std 0.5 (the sample std would be 0.577); group 2: all equal -> 0
    adv = group_advantages(torch.tensor([1., 0., 0., 1., 1., 1., 1., 1.]), group_size=4)
    a = 0.5 / (0.5 + 1e-4)
    assert torch.allclose(adv, torch.tensor([a, -a, -a, a, 0., 0., 0., 0.]), atol=1e-7)


def test_group_advantages_std_uneven_group():
    # r = [0, 0, 3]: mean 1, population std sqrt((1 + 1 + 4) / 3) = sqrt(2)
    adv = group_advantages(torch.tensor([0., 0., 3.]), group_size=3)
    s = math.sqrt(2) + 1e-4
    assert torch.allclose(adv, torch.tensor([-1 / s, -1 / s, 2 / s]), atol=1e-6)


def test_group_advantages_none_is_centered_only():
    adv = group_advantages(torch.tensor([1., 0., 0., 1., 3., 1., 1., 1.]), group_size=4, scale="none")
    assert torch.allclose(adv, torch.tensor([.5, -.5, -.5, .5, 1.5, -.5, -.5, -.5]))


def test_group_advantages_group_of_one_is_zero_not_nan():
    adv = group_advantages(torch.tensor([1., 0., 5.]), group_size=1)
    assert torch.equal(adv, torch.zeros(3))


@pytest.mark.parametrize("rewards, group_size, scale", [
    (torch.zeros(7), 4, "std"),      # 7 is not a multiple of 4
    (torch.zeros(4), 0, "std"),      # group_size < 1
    (torch.zeros(4), 2, "rank"),     # unknown scale
    (torch.zeros(2, 4), 4, "std"),   # not 1-D
])
def test_group_advantages_errors(rewards, group_size, scale):
    with pytest.raises(ValueError):
        group_advantages(rewards, group_size, scale)


# ----------------------------------------------------------------------------- grpo_loss: aggregation

# Two sequences of T = 4: row 0 has 3 response tokens and A = 1, row 1 has 1 token and A = -2. Masked
# positions hold garbage (ratio e^100 overflows float32) that must not touch the loss or its gradient.
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
ADV = torch.tensor([1.0, -2.0])
LOGP = [[-1.0, -2.0, -0.5, 50.0], [-0.3, 50.0, 50.0, 50.0]]
OLD = [[-1.0, -2.0, -0.5, -50.0], [-0.3, -50.0, -50.0, -50.0]]

# ratio = 1 everywhere, so the objective is A_i at every response token and
#   seq-mean:    (1 + (-2)) / 2 = -0.5                  grad = -A_i / |o_i| / B
#   token-mean:  (3 * 1 + 1 * (-2)) / 4 = 0.25          grad = -A_i / N_tokens
#   constant:    (3 - 2) / (B * max_len)                grad = -A_i / (B * max_len)
AGG_CASES = [
    ("seq-mean", None, 0.5, [-1 / 3 / 2, 2 / 1 / 2]),
    ("token-mean", None, -0.25, [-1 / 4, 2 / 4]),
    ("constant", None, -1 / 8, [-1 / 8, 2 / 8]),      # max_len defaults to T = 4
    ("constant", 10, -1 / 20, [-1 / 20, 2 / 20]),
]


@pytest.mark.parametrize("agg, max_len, want_loss, want_grad", AGG_CASES)
def test_loss_and_first_update_gradient(agg, max_len, want_loss, want_grad):
    logp = leaf(LOGP)
    old = torch.tensor(OLD)
    loss, _ = grpo_loss(logp, old, None, ADV, MASK, agg=agg, max_len=max_len)
    assert loss.item() == pytest.approx(want_loss, abs=1e-6)
    g = grad_of(loss, logp)
    assert torch.isfinite(g).all()
    want = torch.tensor([[want_grad[0]] * 3 + [0.0], [want_grad[1], 0.0, 0.0, 0.0]])
    assert torch.allclose(g, want, atol=1e-6)
    assert (g[~MASK] == 0).all() and (g[MASK] != 0).all()


def test_first_update_with_detached_old_equals_minus_mean_advantage():
    # the usual first inner step: old_logp = logp.detach(), so rho = 1 and loss = -mean_i A_i (seq-mean)
    logp = leaf([[-0.7, -1.1], [-2.0, -0.2], [-0.4, -0.9]])
    adv = torch.tensor([0.5, -1.5, 2.0])
    loss, stats = grpo_loss(logp, logp.detach(), None, adv, torch.ones(3, 2))
    assert loss.item() == pytest.approx(-(0.5 - 1.5 + 2.0) / 3)
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["clip_frac"] == 0.0
    assert torch.allclose(grad_of(loss, logp), (-adv / 2 / 3)[:, None].expand(3, 2))


def test_float_mask_same_as_bool_mask():
    logp = torch.tensor(LOGP)
    a, _ = grpo_loss(logp, torch.tensor(OLD), None, ADV, MASK)
    b, _ = grpo_loss(logp, torch.tensor(OLD), None, ADV, MASK.float())
    assert a.item() == b.item()


def test_seq_mean_skips_empty_sequences():
    # a third row with no response tokens neither contributes nor counts: same loss as the two rows alone
    mask = torch.cat([MASK, torch.zeros(1, 4, dtype=torch.bool)])
    logp, old = torch.tensor(LOGP + [[9.0] * 4]), torch.tensor(OLD + [[-9.0] * 4])
    loss, _ = grpo_loss(logp, old, None, torch.tensor([1.0, -2.0, 7.0]), mask)
    assert loss.item() == pytest.approx(0.5)
    # an all-empty batch: loss 0, gradient 0, nothing NaN
    logp = leaf([[1.0, 2.0]])
    for agg in ("seq-mean", "token-mean", "constant"):
        loss, stats = grpo_loss(logp, logp.detach(), None, torch.ones(1), torch.zeros(1, 2), agg=agg)
        assert loss.item() == 0.0 and (grad_of(loss, logp) == 0).all()
        assert all(math.isfinite(v) for v in stats.values())


def test_aggregation_count_for_each_aggregation():
    # rows of 2, 0 and 4 response tokens: 2 non-empty sequences, 6 tokens, 3 rows of 4 (the empty one included)
    rows = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    for m in (rows, rows.float(), rows.long()):  # bool or 0/1, as grpo_loss takes it
        assert aggregation_count(m, "seq-mean").item() == 2
        assert aggregation_count(m, "token-mean").item() == 6
        assert aggregation_count(m, "constant").item() == 3 * 4  # B * max_len, T by default
        assert aggregation_count(m, "constant", max_len=10).item() == 30
    # additive over any split of the rows: micro-batch weights count / whole count sum to one
    for agg in ("seq-mean", "token-mean", "constant"):
        for parts in ([[0], [1], [2]], [[0, 1], [2]], [[0], [1, 2]]):
            assert sum(aggregation_count(rows[p], agg).item() for p in parts) == aggregation_count(rows, agg).item()
    # it is what the loss divides by: ratio 1 and A = 1 everywhere make the summed objective the token count
    logp = torch.zeros(3, 4)
    for agg, want in [("seq-mean", 2 / 2), ("token-mean", 6 / 6), ("constant", 6 / (3 * 4))]:
        loss, _ = grpo_loss(logp, logp, None, torch.ones(3), rows, agg=agg)
        assert loss.item() == pytest.approx(-want), agg


# ----------------------------------------------------------------------------- grpo_loss: clipping

# four one-token sequences, eps = 0.2, token-mean (N = 4):
#   A = +1, rho = 1.5: min(1.5, 1.2) = 1.2    clipped above, zero gradient
#   A = -1, rho = 0.5: min(-0.5, -0.8) = -0.8 clipped below, zero gradient
#   A = +1, rho = 0.5: min(0.5, 0.8) = 0.5    unclipped, grad -A rho / N = -0.125
#   A = -1, rho = 1.5: min(-1.5, -1.2) = -1.5 unclipped, grad -A rho / N = +0.375
CLIP_ADV = torch.tensor([1.0, -1.0, 1.0, -1.0])
CLIP_RATIO = torch.tensor([1.5, 0.5, 0.5, 1.5])


def clip_case(**kw):
    logp = leaf(CLIP_RATIO.log()[:, None].tolist())  # old_logp = 0, so rho = exp(logp)
    loss, stats = grpo_loss(logp, torch.zeros(4, 1), None, CLIP_ADV, torch.ones(4, 1), agg="token-mean", **kw)
    return loss, grad_of(loss, logp)[:, 0], stats


def test_clipping_symmetric():
    loss, g, stats = clip_case(clip_eps=0.2)
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 0.5 - 1.5) / 4)
    assert torch.allclose(g, torch.tensor([0.0, 0.0, -0.125, 0.375]))
    assert stats["clip_frac"] == pytest.approx(0.5)
    assert stats["clip_frac_high"] == pytest.approx(0.25) and stats["clip_frac_low"] == pytest.approx(0.25)
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["adv_mean"] == pytest.approx(0.0)


def test_clip_higher_moves_only_the_upper_bound():
    # eps_high = 0.6: rho = 1.5 < 1.6 is no longer clipped (objective 1.5, grad -1.5 / 4); the lower
    # bound stays at 1 - 0.2, so the A = -1, rho = 0.5 token is still clipped at -0.8
    loss, g, stats = clip_case(clip_eps=0.2, clip_eps_high=0.6)
    assert loss.item() == pytest.approx(-(1.5 - 0.8 + 0.5 - 1.5) / 4)
    assert torch.allclose(g, torch.tensor([-0.375, 0.0, -0.125, 0.375]))
    assert stats["clip_frac"] == pytest.approx(0.25) and stats["clip_frac_high"] == 0.0
    # eps_high = 0.0 is honoured (not mistaken for "unset"): the upper bound is rho = 1
    loss, g, _ = clip_case(clip_eps=0.2, clip_eps_high=0.0)
    assert loss.item() == pytest.approx(-(1.0 - 0.8 + 0.5 - 1.5) / 4)
    assert g[0] == 0.0


# ----------------------------------------------------------------------------- grpo_loss: KL

def test_kl_zero_when_policy_equals_reference():
    logp = leaf([[-1.0, -2.0, -0.5]])
    mask = torch.ones(1, 3)
    adv = torch.tensor([0.7])
    plain, _ = grpo_loss(logp, logp.detach(), None, adv, mask)
    with_kl, stats = grpo_loss(logp, logp.detach(), logp.detach().clone(), adv, mask, kl_coef=0.5)
    assert stats["kl"] == 0.0 and with_kl.item() == plain.item()
    assert torch.equal(grad_of(with_kl, logp), grad_of(plain, logp))  # the KL term adds no gradient


def test_kl_k3_hand_example():
    # d = ref - logp = [0.5, -1.0]: KL = e^d - d - 1 = [e^0.5 - 1.5, e^-1]; A = 0 so only the KL term is left
    logp = leaf([[-1.0, -1.0, 3.0]])
    ref = torch.tensor([[-0.5, -2.0, -40.0]])  # the last token is masked: its huge d must not count
    mask = torch.tensor([[True, True, False]])
    kl = [math.exp(0.5) - 1.5, math.exp(-1.0)]
    beta = 0.1
    loss, stats = grpo_loss(logp, logp.detach(), ref, torch.zeros(1), mask, kl_coef=beta)
    assert stats["kl"] == pytest.approx(sum(kl) / 2)
    assert loss.item() == pytest.approx(beta * sum(kl) / 2)  # loss = -(0 - beta * KL), seq-mean over 2 tokens
    # d/dlogp of beta * (e^d - d - 1) / 2 = beta * (1 - e^d) / 2
    want = [beta * (1 - math.exp(0.5)) / 2, beta * (1 - math.exp(-1.0)) / 2, 0.0]
    assert torch.allclose(grad_of(loss, logp), torch.tensor([want]), atol=1e-7)
    # the stat is reported even when the KL is not in the loss
    _, stats = grpo_loss(logp, logp.detach(), ref, torch.zeros(1), mask)
    assert stats["kl"] == pytest.approx(sum(kl) / 2)


# ----------------------------------------------------------------------------- grpo_loss: errors

def test_grpo_loss_errors():
    x, adv, mask = torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(x, x, None, adv, mask, kl_coef=0.1)
    with pytest.raises(ValueError, match="mask"):
        grpo_loss(x, x, None, adv, torch.ones(2, 4))
    with pytest.raises(ValueError, match="old_logp"):
        grpo_loss(x, torch.zeros(3, 3), None, adv, mask)
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(x, x, None, torch.zeros(2, 1), mask)
    with pytest.raises(ValueError, match="aggregation"):
        grpo_loss(x, x, None, adv, mask, agg="mean")
    with pytest.raises(ValueError, match="max_len"):
        grpo_loss(x, x, None, adv, mask, agg="constant", max_len=0)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        grpo_loss(torch.zeros(3), torch.zeros(3), None, torch.zeros(3), torch.ones(3))


# ----------------------------------------------------------------------------- log-probs and entropy

def test_sequence_logprobs_matches_token_by_token_recomputation():
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=20, block_size=16)).eval()
    with torch.no_grad():  # sharpen the 0.02-std init so the log-probs differ from log(1/20) by a lot
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(10.0)
    ids = torch.randint(0, 20, (2, 7))
    with torch.no_grad():
        got = sequence_logprobs(model, ids)
        assert got.shape == (2, 6)
        for b in range(2):
            for t in range(6):
                # the prefix alone, through the model; log_softmax by hand, at the next token
                z = model(ids[b:b + 1, :t + 1])[0, -1].tolist()
                lse = math.log(sum(math.exp(v) for v in z))
                assert got[b, t].item() == pytest.approx(z[ids[b, t + 1]] - lse, abs=1e-4)
        assert got.std() > 0.5  # not near-uniform, so an off-by-one would show
        resp = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]], dtype=torch.bool)
        masked = sequence_logprobs(model, ids, resp)
        assert torch.equal(masked, torch.where(resp[:, 1:], got, 0.0))
    with pytest.raises(ValueError):
        sequence_logprobs(model, ids, resp[:, 1:])


def test_entropy_from_logits():
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])  # p = (1/4, 3/4) and uniform over 2
    h = entropy_from_logits(logits)
    assert torch.allclose(h, torch.tensor([-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), math.log(2)]))
