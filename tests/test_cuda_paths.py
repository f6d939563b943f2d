"""The CUDA branches, run on the CPU: with R1MINI_EMULATE_CUDA=1 every step takes the path it takes on a GPU
(bf16 autocast, a bf16 KV cache), so a bug a GPU would hit fails here first. Where a GPU is present, every
test runs on it too (benchmarks/gpu_check.sh runs this file there). A toy model, dense and MoE,
through a forward and backward, generation, a GRPO update (mu 2, KL, micro-batches), an SFT run and the
reward model; and the numerics that mixed precision puts at risk: float32 logits and reward scores, and a
GRPO ratio of exactly 1 on-policy."""
import contextlib
import random

import pytest
import torch

from r1mini.device import autocast, cache_dtype, cuda_paths
from r1mini.model import KVCache, Transformer, model_config
from r1mini.reward_model import RewardModel
from r1mini.rl import GRPOConfig, Policy, Rollout, grpo_update
from r1mini.sampling import generate
from r1mini.sft import train_sft

CPU = torch.device("cpu")
MODELS = {"dense": {}, "moe": dict(n_routed_experts=8, moe_top_k=2), "mla": dict(attn="mla")}


ON_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(params=["emulated", pytest.param("cuda", marks=ON_CUDA)])
def dev(request, monkeypatch) -> torch.device:
    """The CPU with the CUDA branches switched on, and a real GPU where there is one."""
    if request.param == "emulated":
        monkeypatch.setenv("R1MINI_EMULATE_CUDA", "1")
        return CPU
    return torch.device("cuda", 0)


def toy(kind: str, dev: torch.device = CPU, vocab_size: int = 100, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(model_config("toy", vocab_size=vocab_size, **MODELS[kind])).to(dev)


def test_the_switch_turns_on_every_cuda_branch(monkeypatch):
    monkeypatch.setenv("R1MINI_EMULATE_CUDA", "1")
    assert cuda_paths(CPU) and cache_dtype(CPU) == torch.bfloat16
    with autocast(CPU):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    monkeypatch.delenv("R1MINI_EMULATE_CUDA")
    assert not cuda_paths(CPU) and cache_dtype(CPU) == torch.float32
    assert isinstance(autocast(CPU), contextlib.nullcontext)


@pytest.mark.parametrize("kind", MODELS)
def test_forward_and_backward_under_bf16_autocast(kind, dev):
    """The MoE forward used to crash here: the shared expert's bf16 output and the routed experts' float32
    weighted sum met in index_add_."""
    model = toy(kind, dev)
    x, y = torch.randint(0, 100, (3, 16), device=dev), torch.randint(0, 100, (3, 16), device=dev)
    with autocast(dev):
        logits, loss = model(x, y)
    loss.backward()
    assert logits.dtype == torch.float32  # the vocabulary head runs in float32 under autocast
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # bf16 is an approximation of the float32 forward, not something else
    with torch.no_grad():
        ref = model(x)
    assert (logits.detach() - ref).abs().max() < 0.05 * ref.abs().max()


def test_the_vocabulary_head_is_float32_from_the_hidden_states(dev):
    model = toy("dense", dev)
    x = torch.randint(0, 100, (2, 10), device=dev)
    with torch.no_grad(), autocast(dev):
        h = model.hidden(x)
        logits = model(x)
    assert h.dtype == torch.float32  # RMSNorm hands back its input's dtype: the float32 residual stream
    by_hand = (h.double() @ model.lm_head.weight.double().t()).float()  # float32 at least, no bf16 rounding
    assert torch.allclose(logits, by_hand, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", MODELS)
def test_generate_with_a_bf16_cache_matches_recomputing(kind, dev, monkeypatch):
    """Greedy decoding with the bf16 KV cache gives the tokens of recomputing the whole sequence under the
    same autocast (prompts of different lengths: the left padding must stay invisible). On a GPU the cached
    and the recomputed forwards run different bf16 kernels, so a near tie may go either way there: 90% of
    the tokens must agree, all of them on the CPU."""
    model = toy(kind, dev).eval()
    made = []
    monkeypatch.setattr(KVCache, "__init__", _spy(KVCache.__init__, made))
    prompts = [[5, 17, 3, 9, 22], [41, 7], [8, 8, 60]]
    out = generate(model, prompts, 8, temperature=0.0)
    assert made == [cache_dtype(dev)]  # bf16, or float32 on a GPU without bf16 (a T4)
    same = 0
    for p, o in zip(prompts, out):
        seq = list(p)
        with torch.no_grad(), autocast(dev):
            for _ in range(8):
                seq.append(int(model(torch.tensor([seq], device=dev))[0, -1].argmax()))
        same += sum(a == b for a, b in zip(o, seq[len(p):]))
    assert same == 24 if dev.type == "cpu" else same >= 0.9 * 24


def _spy(init, made):
    def wrapped(self, cfg, batch_size, max_len, device, dtype):
        made.append(dtype)
        init(self, cfg, batch_size, max_len, device, dtype)
    return wrapped


def _rollout(dev: torch.device, n: int = 6) -> tuple[Rollout, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 100, (n, 14), generator=g)
    mask = torch.zeros(n, 13, dtype=torch.bool)
    for i in range(n):
        mask[i, 4 + i % 4:] = True  # responses of different lengths
    return Rollout(ids.to(dev), mask.to(dev), [""] * n, mask.sum(1).tolist()), torch.linspace(-1, 1, n, device=dev)


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("kind", MODELS)
def test_grpo_update_mu_2_with_kl_in_micro_batches(kind, dev):
    """mu 2, a KL term and micro-batches under bf16 autocast: every update finite, the first one on-policy
    (ratio exactly 1: old log-probs from the same forward), and micro-batching the update changes it by no
    more than bf16 noise."""
    ro, adv = _rollout(dev)
    results = {}
    for micro in (0, 2):
        model = toy(kind, dev)
        policy = Policy(model, torch.optim.SGD(model.parameters(), lr=0.5), model, toy(kind, dev))
        stats = grpo_update(policy, ro, adv, torch.ones(6, dtype=torch.bool, device=dev),
                            GRPOConfig(max_new_tokens=13, mu=2, kl_coef=0.1, micro_batch_size=micro))
        results[micro] = _flat(model), stats
    start = _flat(toy(kind, dev))
    for weights, stats in results.values():
        assert torch.isfinite(weights).all() and (weights - start).abs().max() > 1e-3
        assert stats["ratio_dev"] < 1e-6  # exactly 0 on the CPU
        assert stats["kl"] >= 0 and 0 < stats["entropy"] < 5  # ln(100) = 4.6 is the most a toy can have
    moved = (results[0][0] - start).abs().max()
    assert (results[0][0] - results[2][0]).abs().max() < 0.02 * moved


def test_old_logprobs_come_from_the_same_compiled_forward(dev):
    """With a compiled training forward, old log-probs taken with the eager model differ from the update's
    (different bf16 kernels) and rho is not 1 on-policy; taken through the same forward, it is exactly 1."""
    ro, adv = _rollout(dev)
    model = toy("dense", dev)
    policy = Policy(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.compile(model, dynamic=True))
    stats = grpo_update(policy, ro, adv, torch.ones(6, dtype=torch.bool, device=dev),
                        GRPOConfig(max_new_tokens=13, mu=2))
    assert stats["ratio_dev"] < 1e-6  # exactly 0 on the CPU; with eager old log-probs it was 2e-5


@pytest.mark.parametrize("kind", MODELS)
def test_sft_under_bf16_autocast(kind, dev):
    model = toy(kind, dev)
    rng = random.Random(0)
    examples = []
    for _ in range(12):
        n = rng.randrange(6, 14)
        examples.append(([rng.randrange(1, 100) for _ in range(n)], [j >= n // 2 for j in range(n)]))
    losses = train_sft(model, examples * 4, epochs=3, batch_size=8, lr=3e-3, pad_id=0, warmup=2,
                       micro_batch_size=3)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3])  # it memorises the 12 examples


@pytest.mark.parametrize("kind", MODELS)
def test_reward_model_scores_are_float32(kind, dev):
    """Scores that differ by less than bf16's resolution (8 bits: steps of 1/128 near 1) must stay apart: a
    bf16 head would tie them, and pairwise accuracy counts a tie as wrong."""
    rm = RewardModel(toy(kind, dev))
    ids = torch.randint(0, 100, (4, 9), device=dev)
    lengths = torch.tensor([9, 7, 5, 3], device=dev)
    with torch.no_grad():
        with autocast(dev):
            h = rm.backbone.hidden(ids)[torch.arange(4, device=dev), lengths - 1]
        rm.head.weight.copy_(3e-4 * torch.randn(1, h.size(-1), device=dev))
        rm.head.bias.fill_(1.0)
        with autocast(dev):
            scores = rm(ids, lengths)
        expected = (h.double() @ rm.head.weight.double().t()).squeeze(-1) + 1.0
    assert scores.dtype == torch.float32
    assert torch.allclose(scores.double(), expected, atol=1e-6)  # the head itself adds no bf16 rounding
    assert len(set(scores.tolist())) == 4 and (scores - 1).abs().max() < 1 / 128


def _record_calls(module, name: str, calls: list):
    """Wraps module.name so that every call records its inputs and output (as the caller made them)."""
    original = getattr(module, name)

    def recorded(*args):
        out = original(*args)
        calls.append((args, out))
        return out
    setattr(module, name, recorded)
    return original


def test_moe_routing_is_float32_under_autocast(dev):
    """The router's affinities s_i = sigmoid(u . e_i) pick the top-k experts: in bf16 (autocast casts the
    matmul whatever .float() its inputs got) near-ties flip from one forward to the next, so the old
    log-probs and the update's route tokens differently. The scores must be what float32 gives: the same
    float32 kernel on the same inputs, outside autocast, gives the same bits."""
    model = toy("moe", dev)
    moe = model.moe_layers()[0]
    calls = []
    route = _record_calls(moe, "route", calls)
    x = torch.randint(0, 100, (4, 12), device=dev)
    with torch.no_grad(), autocast(dev):
        model(x)
    (args, (chosen, gates)), = calls
    want_chosen, want_gates = route(*args)  # outside autocast
    assert torch.equal(chosen, want_chosen) and torch.equal(gates, want_gates)
    assert gates.dtype == torch.float32


def test_mla_absorbed_scores_are_float32_under_autocast(dev):
    """MLA's absorbed decode folds W_UK into the query and scores every cached latent: the docstring promises
    scores and softmax in float32, which autocast overrode (its einsums and matmuls ran in bf16). Under
    autocast it must give what it gives outside, on the same inputs."""
    model = toy("mla", dev).eval()
    attn = model.blocks[0].attn
    calls = []
    absorbed = _record_calls(attn, "absorbed", calls)
    out = generate(model, [[5, 17, 3, 9], [41, 7]], 3, temperature=0.0)
    assert len(out) == 2 and calls
    for args, result in calls:
        with torch.no_grad():
            assert torch.equal(result, absorbed(*args))  # same kernels, float32 inside either way
