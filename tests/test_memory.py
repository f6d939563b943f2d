"""Tests for r1mini.memory: parameter counts and the weights / gradients / AdamW terms by hand, the activation
term against the bytes a real forward saves for the backward (float32 and bf16 autocast, dense, GQA or not,
MoE, pretraining's cross-entropy and GRPO's log-probs), the whole peak against the CPU allocations of a real
step, the KV cache by hand, and auto_micro_batch against budgets built by hand."""

import pytest
import torch

from r1mini import distributed, memory
from r1mini.grpo import grpo_loss, logprobs_from_logits
from r1mini.memory import (activation_bytes_per_token, auto_micro_batch, device_memory_bytes, estimate_peak_bytes,
                           measure_peak_bytes, measure_saved_bytes, param_counts)
from r1mini.model import Transformer, model_config

V = 300
CONFIGS = {  # model presets and variants: dense with GQA, dense without, DeepSeekMoE
    "toy": dict(preset="toy"),
    "toy-moe": dict(preset="toy", n_routed_experts=4),
    "cpu": dict(preset="cpu"),
    "cpu-mha": dict(preset="cpu", n_kv_head=4),
    "cpu-moe": dict(preset="cpu", n_routed_experts=8, n_shared_experts=2, moe_top_k=2),
}


def config(name: str, **kw):
    spec = dict(CONFIGS[name])
    return model_config(spec.pop("preset"), vocab_size=V, **spec, **kw)


def autocast(bf16: bool):
    """What the CUDA paths run under (r1mini.device.autocast), on the CPU."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


# -- weights, gradients, optimizer: by hand ----------------------------------------------------------------------

def test_toy_weights_grads_and_adamw_by_hand():
    # toy: C=32, 2 heads of 16, 1 kv head, ffn 96 (8/3 * 32 rounded up to 32), 2 layers, vocab 300, tied head.
    # a block: wq 32*32 + wkv 32*(2*16) + wo 32*32 = 3072, w_gate_up 32*192 + w_down 96*32 = 9216, norms 64
    # -> 12352; two blocks 24704, final norm 32, embedding 300*32 = 9600: 34336 parameters, 24576 in matmuls
    cfg = config("toy")
    assert param_counts(cfg) == (34336, 24576)
    est = estimate_peak_bytes(cfg, "train", 1, 8, bf16=True)
    assert est["weights"] == 4 * 34336 == est["grads"]
    assert est["optimizer"] == 8 * 34336  # exp_avg and exp_avg_sq, float32
    assert est["weight_copies"] == 2 * 24576  # autocast's bf16 copies of the matmul weights
    assert estimate_peak_bytes(cfg, "train", 1, 8, bf16=False)["weight_copies"] == 0
    assert estimate_peak_bytes(cfg, "train", 1, 8, bf16=False, ref_model=True)["weights"] == 8 * 34336
    score = estimate_peak_bytes(cfg, "score", 1, 8, bf16=False)
    assert score["grads"] == score["optimizer"] == score["activations"] == 0
    assert estimate_peak_bytes(cfg, "score", 1, 8, bf16=False, optimizer_state=True)["optimizer"] == 8 * 34336


@pytest.mark.parametrize("name, untied", [(n, False) for n in CONFIGS] + [("toy-moe", True)])
def test_param_counts_match_the_model(name, untied):
    cfg = config(name, tie_embeddings=not untied)
    model = Transformer(cfg)
    # the matrices autocast casts: every 2-D weight of the blocks but the MoE centroids, which route in float32
    matmul = sum(p.numel() for n, p in model.blocks.named_parameters() if p.dim() == 2 and "centroids" not in n)
    assert param_counts(cfg) == (model.num_params(), matmul)


def test_gpu_activation_bytes_per_token_by_hand():
    # gpu: C=512, H=8, kv heads 4, head 64, F=1376, 12 layers. Per layer under bf16 autocast:
    # norms 2*(4C + 4C + 4) = 16C + 8, attention input 4C, q k v out 4*2C, logsumexp 4H, wo input 2C,
    # SwiGLU input copy 2C + gate/up 4F + silu 2F + product 2F: 32C + 8F + 4H + 8 = 27432.
    # Once: token ids 8, cos/sin 4*64, final norm 8C + 4, head input 4C = 6412.
    cfg = model_config("gpu", vocab_size=2053)
    assert activation_bytes_per_token(cfg, bf16=True) == 12 * 27432 + 6412
    # float32: 44C + 16F + 4H + 8 per layer
    assert activation_bytes_per_token(cfg, bf16=False) == 12 * (44 * 512 + 16 * 1376 + 32 + 8) + 6412


def test_checkpointing_keeps_block_inputs_and_one_recomputed_layer_by_hand():
    # gpu under bf16 autocast with activation checkpointing: each of the 12 blocks keeps only its input, the
    # float32 residual stream (4C = 2048 bytes a token), and the block being recomputed in the backward saves
    # what any layer saves (27432, above); the once-per-model part (6412) stays
    cfg = model_config("gpu", vocab_size=2053)
    assert activation_bytes_per_token(cfg, bf16=True, checkpointing=True) == 12 * 2048 + 27432 + 6412
    plain, kept = (estimate_peak_bytes(cfg, "train", 8, 449, bf16=True, checkpointing=c) for c in (False, True))
    assert kept["activations"] == 8 * 449 * 58420 and plain["activations"] == 8 * 449 * (12 * 27432 + 6412)
    assert kept["total"] - plain["total"] == kept["activations"] - plain["activations"]  # nothing else moves
    assert estimate_peak_bytes(cfg, "score", 8, 449, bf16=True, checkpointing=True) == \
        estimate_peak_bytes(cfg, "score", 8, 449, bf16=True)  # no backward, nothing to recompute


# -- activations: against what autograd saves -------------------------------------------------------------------

@pytest.mark.parametrize("rows, seq_len", [(2, 16), (3, 40)])
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_activation_estimate_matches_saved_tensors(name, bf16, rows, seq_len):
    torch.manual_seed(0)
    cfg = config(name)
    model = Transformer(cfg)
    idx, targets = torch.randint(V, (rows, seq_len)), torch.randint(V, (rows, seq_len))

    def forward():
        with autocast(bf16):
            return model(idx, targets)

    saved = measure_saved_bytes(forward, model)
    # the model's activations, plus what cross-entropy saves: the log-softmax (4V) and the targets (8)
    estimate = rows * seq_len * (activation_bytes_per_token(cfg, bf16) + 4 * V + 8)
    assert abs(estimate - saved["activations"]) <= 0.10 * saved["activations"], (estimate, saved)
    assert saved["weight_copies"] == estimate_peak_bytes(cfg, "train", rows, seq_len, bf16=bf16)["weight_copies"]


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("name", ["toy", "cpu-moe"])
def test_grpo_activations_match_saved_tensors(name, bf16):
    torch.manual_seed(0)
    cfg = config(name)
    model = Transformer(cfg)
    rows, T = 4, 30
    ids = torch.randint(V, (rows, T))
    mask, adv, ref = torch.rand(rows, T - 1) > 0.3, torch.randn(rows), torch.randn(rows, T - 1)

    def forward():  # rl.py's update: log-probs of the float32 logits, the loss with the KL term
        with autocast(bf16):
            logits = model(ids)[:, :-1]
        logp = logprobs_from_logits(logits, ids[:, 1:])
        return grpo_loss(logp, logp.detach(), ref, adv, mask, kl_coef=0.04)[0]

    saved = measure_saved_bytes(forward, model)["activations"]
    # the model's activations, the logits (saved by logsumexp) and the loss's few per-token tensors
    model_part = rows * T * (activation_bytes_per_token(cfg, bf16) + 4 * V)
    assert model_part < saved <= model_part + rows * T * memory.LOSS_BYTES_PER_TOKEN
    assert abs(saved - model_part) <= 0.10 * saved


# -- the whole peak: against the CPU's allocations ---------------------------------------------------------------

TRAIN_SHAPE = (4, 96)  # rows, sequence length of the measured training steps


def _train_step(name: str, bf16: bool):
    """A model of preset `name` and one training micro-batch on it (forward under autocast, backward)."""
    torch.manual_seed(0)
    cfg = config(name)
    model = Transformer(cfg)
    rows, seq_len = TRAIN_SHAPE
    idx, targets = torch.randint(V, (rows, seq_len)), torch.randint(V, (rows, seq_len))

    def step():
        with autocast(bf16):
            _, loss = model(idx, targets)
        loss.backward()
    return cfg, model, step


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("name", ["cpu", "cpu-moe"])
def test_train_peak_bounds_a_real_step(name, bf16):
    """A pretraining micro-batch after the first (the gradients exist): what it allocates at its peak, above
    the weights and gradients already there, is within 10% under the estimate's activations, logits,
    weight copies and working part."""
    cfg, model, step = _train_step(name, bf16)
    rows, seq_len = TRAIN_SHAPE
    step()
    measured = measure_peak_bytes(step, "cpu")
    est = estimate_peak_bytes(cfg, "train", rows, seq_len, bf16=bf16)
    allocated = est["total"] - est["weights"] - est["grads"] - est["optimizer"]
    assert 0.9 * allocated <= measured <= allocated, (measured, allocated)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("name", ["cpu", "cpu-moe"])
def test_checkpointed_train_peak_bounds_a_real_step(name, bf16):
    """The same step with activation checkpointing: it allocates under the estimate, which adds the logits'
    buffers (the start of the backward) and the recomputed layer (a moment later, once those are freed) as if
    they were alive at once, and above 60% of it; well under the step without checkpointing."""
    cfg, model, step = _train_step(name, bf16)
    rows, seq_len = TRAIN_SHAPE

    peaks = {}
    for checkpointing in (False, True):
        model.checkpoint_blocks = checkpointing
        step()
        est = estimate_peak_bytes(cfg, "train", rows, seq_len, bf16=bf16, checkpointing=checkpointing)
        peaks[checkpointing] = measure_peak_bytes(step, "cpu"), est["total"] - est["weights"] - est["grads"] \
            - est["optimizer"]
    measured, allocated = peaks[True]
    assert 0.6 * allocated <= measured <= allocated, (measured, allocated)
    assert measured < 0.5 * peaks[False][0]


def test_micro_batch_counts_the_models_activation_checkpointing(monkeypatch):
    """A budget that fits ~10 plain rows of the cpu preset fits more with checkpointing, and micro_batch (what
    GRPO and SFT call) sees it on the model: model.checkpoint_blocks, which --activation_checkpointing sets."""
    model = Transformer(config("cpu"))
    cfg = model.cfg
    one_row = estimate_peak_bytes(cfg, "train", 1, 192, bf16=False)["total"]
    budget = (one_row + 10 * (estimate_peak_bytes(cfg, "train", 2, 192, bf16=False)["total"] - one_row)) / 0.8
    monkeypatch.setenv("R1MINI_MEMORY_GIB", str(budget / 2 ** 30))
    plain = memory.micro_batch(model, "train", 64, 192)
    model.checkpoint_blocks = True
    kept = memory.micro_batch(model, "train", 64, 192)
    assert kept == auto_micro_batch(cfg, "train", 64, 192, budget, bf16=False, checkpointing=True) > 2 * plain
    assert estimate_peak_bytes(cfg, "train", kept, 192, bf16=False, checkpointing=True)["total"] <= 0.8 * budget
    assert memory.micro_batch(model, "train", 64, 192, requested=3) == 3  # a flag still wins


def test_score_peak_bounds_a_real_no_grad_forward():
    torch.manual_seed(0)
    cfg = config("cpu")
    model = Transformer(cfg)
    ids = torch.randint(V, (4, 96))

    def score():
        with torch.no_grad():
            logprobs_from_logits(model(ids)[:, :-1], ids[:, 1:])

    measured = measure_peak_bytes(score, "cpu")
    est = estimate_peak_bytes(cfg, "score", 4, 96, bf16=False)
    assert 0.75 * (est["total"] - est["weights"]) <= measured <= est["total"] - est["weights"]


# -- generation ----------------------------------------------------------------------------------------------------

def test_kv_cache_by_hand():
    # toy: 2 layers, 1 kv head of 16. k and v: 2 * 2 layers * 4 rows * 1 head * 50 slots * 16 * 4 bytes = 51200,
    # half again while finished rows are dropped (76800), + the validity mask (4 * 50 bools)
    cfg = config("toy")
    assert estimate_peak_bytes(cfg, "generate", 4, 50, bf16=False)["cache"] == 51200 + 25600 + 200
    assert estimate_peak_bytes(cfg, "generate", 4, 50, bf16=True)["cache"] == (51200 + 25600) // 2 + 200


def test_generate_peak_bounds_a_real_generation(monkeypatch):
    from r1mini.sampling import generate
    monkeypatch.delenv("R1MINI_EMULATE_CUDA", raising=False)  # a float32 cache
    torch.manual_seed(0)
    cfg = config("cpu")
    model = Transformer(cfg)
    prompts = torch.randint(V, (8, 20)).tolist()
    measured = measure_peak_bytes(lambda: generate(model, prompts, 60, top_p=0.9), "cpu")
    est = estimate_peak_bytes(cfg, "generate", 8, 80, bf16=False, prompt_len=20)
    assert 0.5 * (est["total"] - est["weights"]) <= measured <= est["total"] - est["weights"]


# -- auto_micro_batch ----------------------------------------------------------------------------------------------

def budget_for(cfg, rows: int, seq_len: int, **kw) -> float:
    """The budget whose 80% is exactly the estimated peak of `rows` rows."""
    return estimate_peak_bytes(cfg, "train", rows, seq_len, **kw)["total"] / 0.8


def test_auto_micro_batch_picks_the_largest_that_fits():
    cfg = config("toy")
    # the estimate is a fixed part plus the same bytes per row: 7 rows fit a budget made for 7, not one byte less
    fixed = estimate_peak_bytes(cfg, "train", 0, 100, bf16=False)["total"]
    per_row = estimate_peak_bytes(cfg, "train", 1, 100, bf16=False)["total"] - fixed
    assert estimate_peak_bytes(cfg, "train", 7, 100, bf16=False)["total"] == fixed + 7 * per_row
    assert auto_micro_batch(cfg, "train", 64, 100, budget_for(cfg, 7, 100, bf16=False), bf16=False) == 7
    assert auto_micro_batch(cfg, "train", 64, 100, budget_for(cfg, 7, 100, bf16=False) - 1, bf16=False) == 6
    assert auto_micro_batch(cfg, "train", 5, 100, budget_for(cfg, 7, 100, bf16=False), bf16=False) == 5  # <= rows
    assert auto_micro_batch(cfg, "train", 64, 100, None, bf16=False) == 64  # no budget: no limit
    big = budget_for(cfg, 7, 100, bf16=False)  # margin 1.0: the whole budget, 7 / 0.8 = 8.75 rows
    assert auto_micro_batch(cfg, "train", 64, 100, big, bf16=False, margin=1.0) == 8


def test_auto_micro_batch_says_what_to_lower():
    cfg = config("cpu")
    one_row = estimate_peak_bytes(cfg, "train", 1, 192, bf16=False)["total"]
    with pytest.warns(UserWarning, match="--max_new_tokens"):
        assert auto_micro_batch(cfg, "train", 32, 192, 0.9 * one_row / 0.8, bf16=False) == 1
    with pytest.warns(UserWarning, match="smaller --preset"):  # not even the weights fit
        assert auto_micro_batch(cfg, "train", 32, 192, 1000, bf16=False) == 1
    with pytest.warns(UserWarning, match="--micro_batch_size 1"):
        auto_micro_batch(cfg, "train", 32, 192, 1000, bf16=False, advice="--micro_batch_size 1")


def test_gpu_grpo_update_needs_micro_batches_at_24_gib():
    """The motivating case: 512 rows x 449 tokens is ~80 GiB, so a 24 GiB card takes it in micro-batches of
    about a hundred rows, and the picked size fits where one more row would not."""
    cfg = model_config("gpu", vocab_size=2053)
    budget = 24 * memory.GiB
    assert estimate_peak_bytes(cfg, "train", 512, 449, bf16=True)["total"] > 70 * memory.GiB
    m = auto_micro_batch(cfg, "train", 512, 449, budget, bf16=True)
    assert 80 <= m <= 140
    assert estimate_peak_bytes(cfg, "train", m, 449, bf16=True)["total"] <= 0.8 * budget
    assert estimate_peak_bytes(cfg, "train", m + 1, 449, bf16=True)["total"] > 0.8 * budget


def test_errors_and_device_memory():
    cfg = config("toy")
    with pytest.raises(ValueError, match="kind"):
        estimate_peak_bytes(cfg, "backward", 1, 8, bf16=False)
    with pytest.raises(ValueError, match="rows"):
        auto_micro_batch(cfg, "train", 0, 8, 10 ** 9, bf16=False)
    assert device_memory_bytes("cpu") is None  # unknown: no limit
    # less what generation holds: an earlier test's static cache stays until its model is collected
    assert device_memory_bytes("cpu", limit_gib=1.5) == 3 * 2 ** 29 - memory.held_bytes("cpu")


# -- the stages pick their micro-batches from the budget -------------------------------------------------------

def test_without_a_budget_every_stage_keeps_its_whole_batch(monkeypatch):
    """On the CPU the memory is unknown: GRPO and SFT run all rows at once, generation CPU_GENERATION_ROWS
    (256) rows, pretraining one micro-batch; a flag always wins."""
    from pretrain import fewest_micro_batches
    monkeypatch.delenv("R1MINI_MEMORY_GIB", raising=False)
    model = Transformer(config("toy"))
    assert memory.micro_batch(model, "train", 512, 100) == 512
    assert memory.micro_batch(model, "train", 512, 100, requested=7) == 7
    assert memory.generation_batch(model, 100) == 256 and memory.generation_batch(model, 100, 9) == 9
    assert fewest_micro_batches(model, 32) == 1


def test_a_budget_sizes_every_stage(monkeypatch):
    """R1MINI_MEMORY_GIB sets the budget on any device: the micro-batch is the largest that fits 80% of it
    (checked against the estimate itself), pretraining takes the fewest equal micro-batches that fit."""
    from pretrain import fewest_micro_batches
    model = Transformer(config("cpu"))
    cfg = model.cfg
    one_row = estimate_peak_bytes(cfg, "train", 1, 192, bf16=False)["total"]
    budget = (one_row + 10 * (estimate_peak_bytes(cfg, "train", 2, 192, bf16=False)["total"] - one_row)) / 0.8
    monkeypatch.setenv("R1MINI_MEMORY_GIB", str(budget / 2 ** 30))
    m = memory.micro_batch(model, "train", 64, 192)
    assert m in (10, 11)  # ~10 rows fit (the per-row cost is not exactly linear: some terms are per batch)
    assert estimate_peak_bytes(cfg, "train", m, 192, bf16=False)["total"] <= 0.8 * budget
    assert estimate_peak_bytes(cfg, "train", m + 1, 192, bf16=False)["total"] > 0.8 * budget
    assert fewest_micro_batches(model, 64) == 8  # 64 / 8 = 8 rows <= m; 64 / 7 is not whole, 64 / 4 = 16 > m
    g = memory.generation_batch(model, 192)  # up to 512 rows, as many as fit
    assert estimate_peak_bytes(cfg, "generate", g, 192, bf16=False)["total"] <= 0.8 * budget
    assert estimate_peak_bytes(cfg, "generate", g + 1, 192, bf16=False)["total"] > 0.8 * budget


def test_grpo_update_under_a_budget_is_the_whole_batch_update(monkeypatch):
    """A budget that fits 2 rows of an update: it runs in micro-batches of 2 (counted) and equals the update
    of the whole batch at once (the chunks by length set aside: one chunk, as the rows are all as long)."""
    from r1mini.rl import GRPOConfig, Policy, Rollout, grpo_update
    monkeypatch.setattr(distributed, "LENGTH_CHUNKS", 1)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (6, 40), generator=g)
    mask = torch.zeros(6, 39, dtype=torch.bool)
    mask[:, 10:] = True
    ro, adv, keep = Rollout(ids, mask, [""] * 6, [29] * 6), torch.linspace(-1, 1, 6), torch.ones(6, dtype=torch.bool)
    cfg = GRPOConfig(max_new_tokens=39, mu=2)
    weights, forwards = {}, {}
    for budgeted in (False, True):
        torch.manual_seed(0)
        model = Transformer(config("toy"))
        if budgeted:
            per_row = estimate_peak_bytes(model.cfg, "train", 2, 40, bf16=False)["total"]
            monkeypatch.setenv("R1MINI_MEMORY_GIB", str(per_row / 0.8 / 2 ** 30 * 1.01))  # 2 rows, not 3
        calls = []
        model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        grpo_update(Policy(model, torch.optim.SGD(model.parameters(), lr=0.5), model), ro, adv, keep, cfg)
        weights[budgeted], forwards[budgeted] = torch.cat([p.detach().flatten() for p in model.parameters()]), calls
    assert forwards[False] == [6, 6, 6]  # old log-probs, then two updates, each the whole batch
    # the old log-probs are taken in the update's own chunks (the same kernels: rho exactly 1), 3 x 2 rows,
    # then each update runs 3 x 2 rows
    assert forwards[True] == [2] * 3 + [2] * 6
    assert torch.allclose(weights[True], weights[False], atol=1e-6)


# -- what generation keeps between calls ------------------------------------------------------------------------

def _static_kv_bytes(cfg, rows: int) -> int:
    """A static cache by hand: k and v of every layer, block_size slots, bf16; a bool per slot."""
    return 2 * cfg.n_layer * rows * cfg.n_kv_head * cfg.block_size * cfg.head_dim * 2 + rows * cfg.block_size


def test_static_caches_count_against_every_budget_until_their_model_goes(monkeypatch):
    """The static decode path keeps a block_size cache per model and batch size between calls (a CUDA graph
    replays on their addresses). The budgets used to count that memory as free: a GRPO update sized after a
    dev check then ran out of memory (on a 24 GB card, ~127 rows estimated at 18.8 GiB, plus 4.5 GiB of caches
    unseen). Now it is taken from the budget while the model lives, and given back when it goes."""
    import gc
    from r1mini.sampling import generate
    monkeypatch.setenv("R1MINI_EMULATE_CUDA", "1")  # the static loop and a bf16 cache, as on a GPU
    monkeypatch.setenv("R1MINI_MEMORY_GIB", "0.25")
    torch.manual_seed(0)
    trained = Transformer(config("cpu"))
    empty = device_memory_bytes("cpu")
    assert empty == memory.GiB // 4
    fits_when_empty = memory.micro_batch(trained, "train", 512, 256)
    model = Transformer(config("cpu"))
    generate(model, [[1, 2, 3]] * 100, 2)  # 100 rows padded to 128
    assert empty - device_memory_bytes("cpu") == _static_kv_bytes(model.cfg, 128)  # 34 MB, ~4 rows of training
    assert memory.micro_batch(trained, "train", 512, 256) < fits_when_empty
    del model
    gc.collect()
    assert device_memory_bytes("cpu") == empty
    assert memory.micro_batch(trained, "train", 512, 256) == fits_when_empty


def test_generation_batch_sizes_what_the_static_loop_allocates(monkeypatch):
    """On the CUDA paths generate pads the rows to a power of two and its cache spans block_size, whatever
    seq_len the caller asked for: generation_batch used to size rows x seq_len (here 154 rows of 40 tokens),
    and generate then allocated 256 rows x 256 slots, three times its budget. The cache generate really makes
    for the rows it is given must fit."""
    from r1mini.model import KVCache
    from r1mini.sampling import generate
    monkeypatch.setenv("R1MINI_EMULATE_CUDA", "1")
    torch.manual_seed(0)
    model = Transformer(config("cpu"))
    cfg = model.cfg
    peak = estimate_peak_bytes(cfg, "generate", 40, cfg.block_size, bf16=True, static=True, prompt_len=40)["total"]
    budget = peak / 0.8
    monkeypatch.setenv("R1MINI_MEMORY_GIB", str(budget / memory.GiB))
    rows = memory.generation_batch(model, 40)
    made, init = [], KVCache.__init__

    def spy(self, cfg, batch_size, max_len, device, dtype):
        made.append((batch_size, max_len))
        init(self, cfg, batch_size, max_len, device, dtype)
    monkeypatch.setattr(KVCache, "__init__", spy)
    generate(model, [[5, 6]] * rows, 1)
    (batch, slots), prefill = made  # generate's cache, then the prefill's for the one distinct prompt
    assert prefill == (1, 2)
    assert rows == batch == 32 and slots == cfg.block_size  # 40 fit: the power of two below
    assert estimate_peak_bytes(cfg, "generate", batch, slots, bf16=True, static=True, prompt_len=40)["total"] \
        <= 0.8 * budget


def test_cuda_graph_pools_are_not_free_memory(monkeypatch):
    """CUDA graphs record into private memory pools: reserved by this process (so counted free + reserved),
    usable by nothing else. device_memory_bytes takes them out (a stand-in allocator: no GPU here)."""
    segments = [{"device": 0, "total_size": 2 * memory.GiB, "segment_pool_id": (0, 0)},  # the default pool
                {"device": 0, "total_size": 3 * memory.GiB, "segment_pool_id": (1, 7)},  # a graph pool
                {"device": 1, "total_size": 5 * memory.GiB, "segment_pool_id": (1, 9)}]  # another GPU's
    monkeypatch.delenv("R1MINI_MEMORY_GIB", raising=False)
    monkeypatch.setattr(torch.cuda, "memory_snapshot", lambda *a, **k: segments)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * memory.GiB, 80 * memory.GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 5 * memory.GiB)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 1.0, raising=False)
    assert memory.graph_pool_bytes(torch.device("cuda", 0)) == 3 * memory.GiB
    assert device_memory_bytes(torch.device("cuda", 0)) == (10 + 5 - 3) * memory.GiB


def test_a_per_process_memory_fraction_caps_the_budget(monkeypatch):
    """torch.cuda.set_per_process_memory_fraction caps what this process may allocate (a shared GPU, or
    gpu_check.sh standing in for a 24 GiB card on an 80 GiB one); the budget used to read the device's
    free memory alone and size micro-batches for memory the allocator then refused (stand-ins: no GPU)."""
    monkeypatch.delenv("R1MINI_MEMORY_GIB", raising=False)
    monkeypatch.setattr(torch.cuda, "memory_snapshot", lambda *a, **k: [])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (70 * memory.GiB, 80 * memory.GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2 * memory.GiB)
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 0.3, raising=False)
    assert device_memory_bytes(torch.device("cuda", 0)) == int(0.3 * 80 * memory.GiB)  # 24 GiB, not 72
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda device=None: 1.0)
    assert device_memory_bytes(torch.device("cuda", 0)) == 72 * memory.GiB
