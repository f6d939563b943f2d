"""Tests for r1mini.rl, the RL engine: the rollout's packing and masks (log-probs unchanged by the padding),
the plain update against the policy gradient by hand, the engine's update (through a compiled forward, in
micro-batches and in chunks by length) against the plain update, the options' checks, and one whole GRPO step
on a toy model: the metrics are the means of what the reward function and the stage returned, and dynamic
sampling leaves the weights alone when no group carries a signal."""

import copy
import math

import pytest
import torch

from r1mini import rl
from r1mini.config import ConfigError
from r1mini.grpo import grpo_loss, logprobs_from_logits, sequence_logprobs
from r1mini.model import Transformer, model_config
from r1mini.optim import apply_update
from r1mini.rl import GRPOConfig, Policy, Rollout, grpo_step, grpo_update, make_policy, plain_update, rollout
from r1mini.tokenizer import Tokenizer


def config(T: int, **options) -> GRPOConfig:
    """The update's options; the "constant" aggregation's budget is T, the width of the hand-made masks (what
    grpo_update used when it took no max_len)."""
    return GRPOConfig(max_new_tokens=T, **options)


def flat_weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.fixture(scope="module")
def tiny():
    tok = Tokenizer.train(["What is 12 + 7? <think> 2 + 7 = 9 </think> <answer> 19 </answer>"] * 50, 280)
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=tok.vocab_size, tie_embeddings=False))
    return model, tok


# -- rollout ---------------------------------------------------------------------------------------------

def test_rollout_packs_prompt_and_completion_with_response_mask(tiny):
    model, tok = tiny
    prompts = ["What is 12 + 7?", "Hi"]
    ro = rollout(model, tok, [tok.encode(p) for p in prompts], group_size=3, stop_ids=[tok.eot_id], max_new_tokens=6,
                 temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert ro.ids.shape[0] == 6 and ro.mask.shape == (6, ro.ids.shape[1] - 1)
    for i in range(6):
        p = tok.encode(prompts[i // 3])  # groups are contiguous
        n = ro.lengths[i]
        assert ro.ids[i, :len(p)].tolist() == p
        # the mask marks exactly the targets that are completion tokens
        assert ro.mask[i].nonzero().squeeze(1).tolist() == list(range(len(p) - 1, len(p) - 1 + n))
        completion = [t for t in ro.ids[i, len(p):len(p) + n].tolist() if t != tok.eot_id]
        assert tok.decode(completion) == ro.completions[i]


def test_rollout_logprobs_match_a_single_sequence_forward(tiny):
    """Right padding must not change a sequence's log-probs: compare to each sequence alone."""
    model, tok = tiny
    ro = rollout(model, tok, [tok.encode(p) for p in ["What is 12 + 7?", "Hi"]], group_size=2, stop_ids=[tok.eot_id],
                 max_new_tokens=5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = sequence_logprobs(model, ro.ids)
        for i in range(4):
            n = int(ro.mask[i].nonzero().max()) + 2  # real length of row i
            alone = logprobs_from_logits(model(ro.ids[i:i + 1, :n])[:, :-1], ro.ids[i:i + 1, 1:n])
            assert torch.allclose(batched[i, :n - 1], alone[0], atol=1e-5)


# -- the update ------------------------------------------------------------------------------------------

def test_grpo_update_through_a_compiled_forward_equals_eager():
    """--compile true gives the Policy a torch.compile'd forward (which has no truth value): the update must run
    through it and give the eager update's weights. Compiled with the aot_eager backend: dynamo's module and
    AOT autograd's backward, as under --compile, without generating kernels (a minute of C++ compiling on
    2 cores); inductor's kernels are test_cuda_paths.py's old log-probs test."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (4, 12), generator=g)
    mask = torch.zeros(4, 11, dtype=torch.bool)
    mask[:, 5:] = True
    ro, adv = Rollout(ids, mask, [""] * 4, [6] * 4), torch.tensor([1.0, -1.0, 0.5, -0.5])
    keep = torch.ones(4, dtype=torch.bool)
    weights = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = Transformer(model_config("toy", vocab_size=100))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        policy = Policy(model, optimizer, forward=torch.compile(model, backend="aot_eager") if compiled else model)
        grpo_update(policy, ro, adv, keep, config(T=11))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.manual_seed(0)
    start = torch.cat([p.detach().flatten() for p in Transformer(model_config("toy", vocab_size=100)).parameters()])
    assert not torch.equal(weights[0], start)  # the update moved the weights
    assert torch.allclose(weights[0], weights[1], atol=1e-5)


def varied_rollout(T: int = 30):
    """Eight rows whose prompt + completion end at very different columns of a T-column batch."""
    g = torch.Generator().manual_seed(2)
    spans = [(3, 6), (2, 20), (4, 9), (3, 28), (5, 12), (2, 4), (3, 15), (6, 25)]  # (prompt, prompt + reply) tokens
    ids = torch.randint(1, 100, (8, T), generator=g)
    mask = torch.zeros(8, T - 1, dtype=torch.bool)
    for i, (prompt, end) in enumerate(spans):
        ids[i, end:] = 0  # padding
        mask[i, prompt - 1:end - 1] = True  # targets ids[prompt .. end - 1]
    return Rollout(ids, mask, [""] * 8, mask.sum(1).tolist()), torch.linspace(-1, 1, 8)


def gradient(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_plain_update_is_the_policy_gradient_by_hand():
    """On-policy the ratio is 1 and its gradient that of log pi, and no token is clipped: the update's gradient
    is that of -(1/G) sum_i A_i (1/|o_i|) sum_t log pi(o_it) (seq-mean), written here without grpo_loss."""
    ro, adv = varied_rollout()
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    by_hand = copy.deepcopy(model)
    plain_update(model, torch.optim.SGD(model.parameters(), lr=0.0), ro, adv, config(T=29, grad_clip=1e9))
    logp = torch.log_softmax(by_hand(ro.ids)[:, :-1], -1).gather(-1, ro.ids[:, 1:, None])[..., 0]
    m = ro.mask.float()
    (-(adv * (logp * m).sum(1) / m.sum(1)).mean()).backward()
    assert torch.allclose(gradient(model), gradient(by_hand), atol=1e-6) and gradient(model).abs().max() > 1e-3


@pytest.mark.parametrize("agg", ["seq-mean", "token-mean", "constant"])
@pytest.mark.parametrize("micro, kl_coef", [(0, 0.0), (1, 0.1), (3, 0.0)])
def test_engine_update_has_the_plain_updates_gradient(agg, micro, kl_coef, monkeypatch):
    """grpo_update runs the batch in chunks cut by length (micro 0: 4 chunks of 2 rows) or in micro-batches of
    `micro` rows, each chunk's loss weighted by its share of the aggregation's count, and takes the reference's
    log-probs in chunks of their own: its accumulated gradient is plain_update's over the whole padded batch."""
    ro, adv = varied_rollout()
    cfg = config(T=29, agg=agg, micro_batch_size=micro, kl_coef=kl_coef, grad_clip=1e9)
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    plain, ref = copy.deepcopy(model), Transformer(model_config("toy", vocab_size=100)) if kl_coef else None
    grads = []

    def keep_gradient(model, optimizer, loss, grad_clip):  # the gradient the engine is about to apply
        grads.append(gradient(model))
        return apply_update(model, optimizer, loss, grad_clip)
    monkeypatch.setattr(rl, "apply_update", keep_gradient)
    grpo_update(Policy(model, torch.optim.SGD(model.parameters(), lr=0.1), model, ref), ro, adv,
                torch.ones(8, dtype=torch.bool), cfg)
    plain_update(plain, torch.optim.SGD(plain.parameters(), lr=0.1), ro, adv, cfg, ref_model=ref)
    assert len(grads) == 1 and torch.allclose(grads[0], gradient(plain), atol=1e-6)
    assert grads[0].abs().max() > 1e-3


@pytest.mark.parametrize("agg", ["seq-mean", "token-mean", "constant"])
def test_grpo_update_in_length_chunks_is_the_plain_update(agg):
    """The update runs in 4 chunks of 2 rows by length, each forward only as wide as its longest row (counted),
    and moves the weights as plain_update over the whole padded batch does (clipping and the step included)."""
    ro, adv = varied_rollout()
    cfg = config(T=29, agg=agg)
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    plain, start = copy.deepcopy(model), flat_weights(model)
    widths = []
    model.register_forward_hook(lambda m, i, o: widths.append(tuple(i[0].shape)))
    grpo_update(Policy(model, torch.optim.SGD(model.parameters(), lr=0.5), model), ro, adv,
                torch.ones(8, dtype=torch.bool), cfg)
    assert widths == [(2, 6), (2, 12), (2, 20), (2, 28)]  # rows ending at 4 and 6, 9 and 12, 15 and 20, 25 and 28
    plain_update(plain, torch.optim.SGD(plain.parameters(), lr=0.5), ro, adv, cfg)
    assert torch.allclose(flat_weights(model), flat_weights(plain), atol=1e-6)
    assert (flat_weights(model) - start).abs().max() > 1e-3  # and the update did move the weights


@pytest.mark.parametrize("agg", ["seq-mean", "token-mean", "constant"])
def test_grpo_update_micro_batches_equal_one_batch(agg):
    """Gradient accumulation over micro-batches of 1 or 2 rows gives the update of the whole batch, for every
    aggregation: the chunks' losses are weighted by their share of sequences, tokens or rows."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 100, (5, 12), generator=g)
    mask = torch.zeros(5, 11, dtype=torch.bool)
    for i, start in enumerate([2, 4, 6, 8, 11]):  # responses of 9, 7, 5, 3 and 0 tokens
        mask[i, start:] = True
    ro = Rollout(ids, mask, [""] * 5, mask.sum(1).tolist())
    adv, keep = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0]), torch.ones(5, dtype=torch.bool)
    results = {}
    for micro in (0, 1, 2):
        torch.manual_seed(0)
        model = Transformer(model_config("toy", vocab_size=100))
        ref = Transformer(model_config("toy", vocab_size=100))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        stats = grpo_update(Policy(model, optimizer, forward=model, ref_model=ref), ro, adv, keep,
                            config(T=11, mu=2, kl_coef=0.1, agg=agg, micro_batch_size=micro))
        results[micro] = (torch.cat([p.detach().flatten() for p in model.parameters()]), stats)
    for micro in (1, 2):
        assert torch.allclose(results[micro][0], results[0][0], atol=1e-6), micro
        assert results[micro][1]["kl"] == pytest.approx(results[0][1]["kl"], rel=1e-4, abs=1e-7)
    torch.manual_seed(0)
    start = torch.cat([p.detach().flatten() for p in Transformer(model_config("toy", vocab_size=100)).parameters()])
    assert (results[0][0] - start).abs().max() > 1e-3  # the updates moved the weights


# -- the options -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, field, message", [
    (dict(agg="sum"), "agg", "must be one of 'seq-mean', 'token-mean', 'constant', or module:name, got 'sum'"),
    (dict(top_p=0), "top_p", "must be in (0, 1], got 0"),
    (dict(top_p=1.5), "top_p", "must be in (0, 1], got 1.5"),
    (dict(lr=0), "lr", "must be > 0, got 0"),
    (dict(micro_batch_size=-1), "micro_batch_size", "must be >= 0, got -1"),
    (dict(scale="rank"), "scale", "must be one of 'std', 'none', got 'rank'"),
    (dict(group_size=0), "group_size", "must be > 0, got 0"),  # the default rules: an int > 0...
    (dict(temperature=-0.1), "temperature", "must be >= 0, got -0.1"),  # ...a float >= 0...
    (dict(kl_coef=math.inf), "kl_coef", "must be a finite number, got inf"),  # ...and finite
])
def test_grpo_config_rejects_bad_values(options, field, message):
    with pytest.raises(ConfigError) as e:
        GRPOConfig(**options)
    assert (e.value.field, e.value.message, str(e.value)) == (field, message, f"{field} {message}")
    assert isinstance(e.value, ValueError)


def test_grpo_config_accepts_the_edges():
    cfg = GRPOConfig(top_p=1.0, micro_batch_size=0, temperature=0.0, kl_coef=0.0, agg="constant", scale="none",
                     weight_decay=0.0)
    assert (cfg.top_p, cfg.micro_batch_size, cfg.agg) == (1.0, 0, "constant")


# -- one GRPO step ---------------------------------------------------------------------------------------

class RecordingReward:
    """A reward function that scores a completion by its length in characters (0, 0.5 or 1: samples of one
    prompt differ, as they would when some are right) or a constant, and records what it was given."""

    def __init__(self, constant: float | None = None):
        self.constant, self.calls = constant, []

    def __call__(self, completions, items):
        rewards = [self.constant if self.constant is not None else (len(c) % 3) / 2 for c in completions]
        self.calls.append((list(completions), list(items), rewards))
        return rewards, {"half": [r / 2 for r in rewards]}


PROMPTS = ["What is 12 + 7?", "Hi", "What is 2 + 3?"]


def step_once(tok, reward_fn, seed: int = 0, **options):
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=tok.vocab_size))
    cfg = GRPOConfig(group_size=4, max_new_tokens=8, **options)
    policy = make_policy(model, cfg, torch.device("cpu"))
    before = flat_weights(model)
    chars = lambda completions, parts: {"chars": [len(c) for c in completions]}  # noqa: E731 (a stage's measure)
    metrics = grpo_step(policy, tok, [tok.encode(p) for p in PROMPTS], ["q0", "q1", "q2"], reward_fn, cfg, step=0,
                        stop_ids=[tok.eot_id], generator=torch.Generator().manual_seed(seed), reply_metrics=chars)
    return metrics, before, flat_weights(model), policy


def test_grpo_step_metrics_are_the_rewards_means(tiny):
    _, tok = tiny
    reward_fn = RecordingReward()
    metrics, before, after, _ = step_once(tok, reward_fn, drop_uniform_groups=True)
    # one call for the whole batch, each prompt's item repeated for its G = 4 samples, groups contiguous
    assert len(reward_fn.calls) == 1
    completions, items, rewards = reward_fn.calls[0]
    assert items == ["q0"] * 4 + ["q1"] * 4 + ["q2"] * 4 and len(completions) == 12
    groups = [rewards[i:i + 4] for i in range(0, 12, 4)]
    mixed = sum(len(set(g)) > 1 for g in groups) / 3
    assert 0 < mixed  # some group carries a signal (else the weights could not move)
    assert metrics["reward"] == round(sum(rewards) / 12, 4)
    assert metrics["half"] == round(sum(rewards) / 24, 4)  # a part of the reward, averaged the same way
    assert metrics["mixed_groups"] == round(mixed, 4)
    assert 1 <= metrics["length"] <= 8 and metrics["chars"] == round(sum(map(len, completions)) / 12, 4)
    assert metrics["entropy"] > 0 and metrics["kl"] == 0.0 and metrics["clip_frac"] == 0.0  # on-policy, no KL
    assert not torch.equal(before, after)  # the mixed groups were trained on


def test_grpo_step_with_uniform_rewards_and_dynamic_sampling_does_not_update(tiny):
    _, tok = tiny
    reward_fn = RecordingReward(constant=1.0)
    metrics, before, after, policy = step_once(tok, reward_fn, drop_uniform_groups=True)
    assert reward_fn.calls[0][2] == [1.0] * 12
    assert metrics["reward"] == 1.0 and metrics["mixed_groups"] == 0.0
    assert torch.equal(before, after)  # every group dropped: no update at all
    assert policy.optimizer.state_dict()["state"] == {}  # not even an optimizer step on zero gradients
    # the same rollouts with differing rewards do update (the same seed samples the same completions)
    varied = RecordingReward()
    _, before, after, _ = step_once(tok, varied, drop_uniform_groups=True)
    assert varied.calls[0][0] == reward_fn.calls[0][0]
    assert not torch.equal(before, after)


def test_grpo_step_resets_the_reference_every_ref_reset_every_steps(tiny):
    """With kl_coef > 0 the frozen reference is reset to the current policy at steps 0, ref_reset_every, ..."""
    _, tok = tiny
    for step, reset in [(0, True), (1, False), (3, True)]:
        torch.manual_seed(0)
        model = Transformer(model_config("toy", vocab_size=tok.vocab_size))
        cfg = GRPOConfig(group_size=4, max_new_tokens=8, kl_coef=0.1, ref_reset_every=3)
        policy = make_policy(model, cfg, torch.device("cpu"))
        assert policy.ref_model is not None and not any(p.requires_grad for p in policy.ref_model.parameters())
        with torch.no_grad():
            for p in policy.ref_model.parameters():
                p.add_(0.5)  # a reference that differs from the policy
        stale, start = flat_weights(policy.ref_model), flat_weights(model)
        metrics = grpo_step(policy, tok, [tok.encode(p) for p in PROMPTS], [0, 1, 2], RecordingReward(), cfg,
                            step=step, stop_ids=[tok.eot_id], generator=torch.Generator().manual_seed(0))
        assert torch.equal(flat_weights(policy.ref_model), start if reset else stale), step
        # the KL to the reference: 0 on the update right after a reset (on-policy), > 0 against the stale one
        assert (metrics["kl"] == 0.0) == reset and metrics["kl"] >= 0, (step, metrics["kl"])


def test_step_metrics_average_what_the_stage_measured(tiny):
    """The stage's measures are averaged like the rewards (over their own values: a measure of some replies
    only averages those), and one with no value anywhere is null, not 0; the engine knows none of them."""
    from r1mini.rl import step_metrics
    model, _ = tiny
    ro = Rollout(torch.zeros(4, 6, dtype=torch.long), torch.ones(4, 5, dtype=torch.bool), [""] * 4, [5, 3, 5, 3])
    common = dict(mixed=torch.tensor([1.0]), update={"kl": None}, t_gen=1.0, t_train=1.0, cfg=GRPOConfig(), model=model)
    metrics = step_metrics(ro, torch.tensor([1.0, 1.0, 0.0, 0.0]), {"accuracy": [1.0, 1.0, 0.0, 1.0]}, **common,
                           measured={"long": [1.0, 0.0, 1.0, 0.0], "long_acc": [1.0, 0.0], "none_yet": []})
    assert (metrics["reward"], metrics["accuracy"], metrics["length"]) == (0.5, 0.75, 4.0)
    assert (metrics["long"], metrics["long_acc"], metrics["none_yet"]) == (0.5, 0.5, None)
    assert metrics["kl"] == 0.0  # the engine's own empty value (no update) stays 0
    plain = step_metrics(ro, torch.zeros(4), {}, **common)
    assert "steps_share" not in plain and "reflection" not in plain and "long" not in plain


@pytest.mark.parametrize("emulate", ["0", "1"])
@pytest.mark.parametrize("passes", [dict(mu=2), dict(minibatches=2)])
def test_the_first_update_is_exactly_on_policy(monkeypatch, emulate, passes):
    """With mu x minibatches > 1 the old log-probs are taken before the first update, and the first update is
    on-policy: rho = exp(logp - old_logp) must be exactly 1. Old log-probs used to come from full-width batches
    and the update from chunks of other rows and widths, where kernels chosen by shape differ in the last
    bits: ratio_dev was 2.6e-9 in float32 and 3.5e-7 under bf16 (R1MINI_EMULATE_CUDA), more on a GPU. Taken in
    the update's own chunks, each side runs the same kernels on the same inputs: 0 in both."""
    monkeypatch.setenv("R1MINI_EMULATE_CUDA", emulate)
    g = torch.Generator().manual_seed(0)
    n, T = 64, 40
    ids = torch.randint(0, 300, (n, T), generator=g)
    lengths = torch.randint(4, T - 8, (n,), generator=g)
    mask = torch.zeros(n, T - 1, dtype=torch.bool)
    for i, length in enumerate(lengths.tolist()):
        mask[i, 8:8 + length] = True  # a prompt of 8 tokens, responses of 4 to 31
    ro = Rollout(ids, mask, [""] * n, lengths.tolist())
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=300))
    policy = make_policy(model, config(T - 1, kl_coef=0.01, **passes), torch.device("cpu"))
    stats = grpo_update(policy, ro, torch.randn(n, generator=g), torch.ones(n, dtype=torch.bool),
                        config(T - 1, kl_coef=0.01, **passes))
    assert stats["ratio_dev"] == 0.0  # not a tolerance: both sides are pinned to the same kernels and shapes
    assert stats["kl"] > 0  # the later update has moved away from the reference: the KL term is live
