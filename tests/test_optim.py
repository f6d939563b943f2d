"""Tests for r1mini.optim: one optimizer update by hand (the gradient norm clipped, the norm before clipping
returned, every MoE routing bias nudged once), a NaN refused before the step, and the learning-rate schedule
at its landmarks."""

import math

import pytest
import torch

from r1mini.model import Transformer, model_config
from r1mini.optim import apply_update, learning_rate


class Linear2(torch.nn.Module):
    """Two weights and no MoE layers, so an update can be worked out by hand."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def moe_layers(self):
        return []


def test_apply_update_clips_then_steps_by_hand():
    model = Linear2()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = (model.w * torch.tensor([3.0, 4.0])).sum()  # gradient (3, 4), norm 5
    loss.backward()
    grad_norm, loads = apply_update(model, optimizer, loss.detach(), grad_clip=1.0)
    assert grad_norm.item() == pytest.approx(5.0) and loads == []  # the norm before clipping
    assert torch.allclose(model.w.detach(), torch.tensor([-0.6, -0.8]), atol=1e-5)  # w - lr * g * 1/5
    # a norm under the bound is not touched
    optimizer.zero_grad()
    (model.w * torch.tensor([0.3, 0.4])).sum().backward()
    grad_norm, _ = apply_update(model, optimizer, torch.tensor(1.0), grad_clip=1.0)
    assert grad_norm.item() == pytest.approx(0.5)
    assert torch.allclose(model.w.detach(), torch.tensor([-0.9, -1.2]), atol=1e-5)


@pytest.mark.parametrize("bad", ["loss", "gradient"])
def test_apply_update_refuses_nan_before_the_step(bad):
    model = Linear2()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scale = torch.tensor([3.0, float("nan") if bad == "gradient" else 4.0])
    loss = (model.w * scale).sum()
    loss.backward()
    with pytest.raises(FloatingPointError, match="loss is .*gradient norm nan" if bad == "gradient" else "loss is nan"):
        apply_update(model, optimizer, torch.tensor(float("nan")) if bad == "loss" else loss.detach(), grad_clip=1.0)
    assert torch.equal(model.w.detach(), torch.zeros(2))  # no step was taken


def test_apply_update_nudges_every_moe_bias_once():
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=50, n_routed_experts=4)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    assert len(model.moe_layers()) > 0
    _, loss = model(torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 8)))
    loss.backward()
    biases = [moe.bias.clone() for moe in model.moe_layers()]
    counts = [moe.load.clone() for moe in model.moe_layers()]  # tokens routed to each expert in that forward
    _, loads = apply_update(model, optimizer, loss.detach(), grad_clip=1.0)
    assert len(loads) == len(model.moe_layers()) == len(counts)
    for moe, bias, count, load in zip(model.moe_layers(), biases, counts, loads):
        # one step of b_i += gamma * sign(mean load - load_i), toward the underloaded experts
        assert torch.allclose(moe.bias, bias + moe.gamma * torch.sign(count.mean() - count))
        assert not torch.equal(moe.bias, bias)
        assert torch.allclose(load, count / count.sum())
    # through a wrapper, the MoE layers are found in moe_model
    wrapper = torch.nn.ModuleDict({"inner": model})
    _, loss = model(torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 8)))
    loss.backward()
    _, loads = apply_update(wrapper, optimizer, loss.detach(), grad_clip=1.0, moe_model=model)
    assert len(loads) == len(model.moe_layers())


def test_learning_rate_warms_up_holds_then_decays_by_hand():
    lr = lambda step, **kw: learning_rate(step, 10, warmup=2, peak=0.5, **kw)  # noqa: E731
    assert [lr(s) for s in (0, 1)] == [0.25, 0.5]  # linear warmup: (step + 1) / warmup of the peak
    assert lr(2) == 0.5 and lr(6) == pytest.approx(0.25) and lr(10) == pytest.approx(0.0)  # cosine from step 2
    assert lr(10, min_ratio=0.1) == pytest.approx(0.05) and lr(99, min_ratio=0.1) == pytest.approx(0.05)  # the floor
    # warmup-stable-decay: the peak until step 6, then half the cosine at step 8, of 10
    assert [lr(s, decay_from=6) for s in (2, 5, 6)] == [0.5, 0.5, 0.5] and lr(8, decay_from=6) == pytest.approx(0.25)
    # SFT's: the cosine over every step, the warmup's included, as a factor of the peak
    assert learning_rate(5, 10, warmup=2, decay_from=0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_learning_rate_is_pretrainings_curve_bit_for_bit():
    """pretrain.py's schedule as it was written before it moved here (linear warmup, cosine to min_lr_ratio):
    the same floats, so that a run gives the same weights."""
    def before(step, lr=3e-3, warmup=50, total=700, floor=0.1):
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
    assert all(learning_rate(s, 700, warmup=50, peak=3e-3, min_ratio=0.1) == before(s) for s in range(800))
