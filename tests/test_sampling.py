"""Tests for r1mini.sampling: cached batched generation against the no-cache reference, stop tokens,
length limits, temperature / top-p sampling, seeding."""

from collections import Counter

import pytest
import torch

from conftest import assert_same_greedy
from r1mini import sampling
from r1mini.model import ModelConfig, Transformer
from r1mini.sampling import generate, generate_no_cache, sample_next

V = 40
# untied embeddings: a tied random model mostly repeats its last token, which would make the tests weak
BASE = dict(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, tie_embeddings=False)
KINDS = {"dense": dict(seed=1), "moe": dict(seed=2, n_routed_experts=4, moe_top_k=2), "mla": dict(seed=3, attn="mla")}
PROMPTS = [[5, 9, 3], [7, 1, 2, 8, 30, 4, 11], [17], [3, 3, 21, 6, 9]]  # different lengths, one batch


def make_model(seed: int = 0, scale: float = 5.0, **kw) -> Transformer:
    """A random tiny model with weights scaled up so greedy decoding is not one repeated token."""
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**{**BASE, **kw}))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(scale)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_generate_matches_no_cache(kind):
    model = make_model(**KINDS[kind])
    model.train()  # generate must switch to eval (MoE load) and back
    outs = generate(model, PROMPTS, 12, temperature=0)
    assert model.training
    assert_same_greedy(model, PROMPTS, outs, [generate_no_cache(model, p, 12) for p in PROMPTS])
    assert all(len(out) == 12 for out in outs)
    # non-trivial continuations, so the comparison means something
    assert all(len(set(out)) >= 3 for out in outs), outs
    assert len({tuple(o) for o in outs}) == len(outs)


def test_stop_tokens():
    model = make_model(seed=1)
    free = generate(model, PROMPTS, 12, temperature=0)
    # a stop token that first occurs part-way into the first continuation, also occurs in another one,
    # and is absent from a third
    stop = next((t for t in free[0][2:] if t not in free[0][:2] and any(t in o for o in free[1:])
                 and any(t not in o for o in free[1:])), None)
    assert stop is not None, free
    outs = generate(model, PROMPTS, 12, temperature=0, stop_ids=[stop])
    continued = 0
    for f, o in zip(free, outs):
        if stop in f:
            assert o == f[:f.index(stop) + 1]  # stops at, and includes, its first stop token
        else:
            assert o == f  # the others run on as if nothing happened
            continued += 1
    assert continued >= 1
    assert outs[0][-1] == stop and 3 <= len(outs[0]) < 12
    # generate_no_cache stops the same way
    assert_same_greedy(model, PROMPTS[:1], outs[:1], [generate_no_cache(model, PROMPTS[0], 12, stop_ids=[stop])])


def test_all_stopped_ends_early():
    model = make_model(seed=1)
    free = generate(model, PROMPTS, 12, temperature=0)
    stops = {o[0] for o in free}  # every sequence stops at its first token
    assert generate(model, PROMPTS, 12, temperature=0, stop_ids=list(stops)) == [[o[0]] for o in free]


def test_max_new_tokens_and_block_size():
    model = make_model(seed=2)
    for n in (1, 5):
        assert [len(o) for o in generate(model, PROMPTS, n, temperature=1.0)] == [n] * len(PROMPTS)
    long = list(range(1, 29))  # 28 tokens: only 4 fit in block_size 32
    outs = generate(model, [long, [1, 2]], 100, temperature=1.0)
    for p, o in zip([long, [1, 2]], outs):
        assert len(o) <= 32 - len(long) and len(p) + len(o) <= 32
    assert len(outs[0]) == 4
    assert len(generate_no_cache(model, long, 100)) == 4
    with pytest.raises(ValueError, match="block_size"):
        generate(model, [list(range(32))], 5)
    with pytest.raises(ValueError, match="prompt"):
        generate(model, [[1], []], 5)
    with pytest.raises(ValueError, match="prompt"):
        generate(model, [], 5)


@pytest.mark.assignment5
def test_sample_next_greedy_and_tiny_top_p():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 30, generator=g)
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))
    for _ in range(20):
        assert torch.equal(sample_next(logits, temperature=1.0, top_p=1e-6, generator=g), logits.argmax(-1))


@pytest.mark.assignment5
def test_top_p_nucleus():
    probs = torch.tensor([0.1, 0.4, 0.2, 0.3])  # sorted: 0.4 (1), 0.3 (3), 0.2 (2), 0.1 (0)
    logits = probs.log().expand(4000, 4)
    g = torch.Generator().manual_seed(1)
    counts = Counter(sample_next(logits, top_p=0.5, generator=g).tolist())
    assert set(counts) == {1, 3}  # 0.4 alone is short of 0.5; 0.4 + 0.3 reaches it
    assert counts[1] / 4000 == pytest.approx(4 / 7, abs=0.03)  # renormalised within the nucleus
    counts = Counter(sample_next(logits, top_p=0.75, generator=g).tolist())
    assert set(counts) == {1, 2, 3}
    counts = Counter(sample_next(logits, top_p=1.0, generator=g).tolist())
    for tok, p in enumerate(probs.tolist()):
        assert counts[tok] / 4000 == pytest.approx(p, abs=0.03)
    # temperature sharpens: at T=0.25 the top token's share is p^4 / sum p^4
    counts = Counter(sample_next(logits, temperature=0.25, generator=g).tolist())
    assert counts[1] / 4000 == pytest.approx(0.4 ** 4 / sum(p ** 4 for p in probs.tolist()), abs=0.03)


@pytest.mark.assignment5
def test_zero_probability_tokens_are_never_sampled():
    logits = torch.tensor([float("-inf"), 0.0, float("-inf"), 1.0, float("-inf")]).expand(20000, 5)
    g = torch.Generator().manual_seed(2)
    counts = Counter(sample_next(logits, generator=g).tolist())
    assert set(counts) == {1, 3}
    assert counts[3] / 20000 == pytest.approx(torch.tensor([0.0, 1.0]).softmax(0)[1].item(), abs=0.01)


@pytest.mark.assignment5
def test_temperature_applies_before_top_p():
    """The nucleus is cut from the tempered distribution (evaluation uses T 0.6 with top-p 0.95). At T = 0.5 the
    probabilities (0.4, 0.3, 0.2, 0.1) become (16, 9, 4, 1) / 30: 0.53 alone reaches top_p 0.5, so only the top
    token is ever drawn. Cut first at T = 1, the nucleus would be {0.4, 0.3}, then tempered to 16 : 9."""
    logits = torch.tensor([0.4, 0.3, 0.2, 0.1]).log().expand(2000, 4)
    g = torch.Generator().manual_seed(3)
    assert set(sample_next(logits, temperature=0.5, top_p=0.5, generator=g).tolist()) == {0}
    # T = 2 flattens (0.4, 0.3, 0.2, 0.1) to shares of sqrt(p): 0.4 alone no longer reaches top_p 0.35
    counts = Counter(sample_next(logits, temperature=2.0, top_p=0.35, generator=g).tolist())
    w = [p ** 0.5 for p in (0.4, 0.3)]
    assert set(counts) == {0, 1} and counts[0] / 2000 == pytest.approx(w[0] / sum(w), abs=0.04)


@pytest.mark.assignment5
def test_top_p_at_an_exact_boundary_stops_there():
    """Four equal logits give probabilities of exactly 0.25. The nucleus is the smallest set of most likely tokens
    whose mass reaches top_p (>=): at top_p 0.5 two tokens, at 0.5 plus a little three, at 0.25 one."""
    logits = torch.zeros(4000, 4)
    g = torch.Generator().manual_seed(4)
    for top_p, size in [(0.5, 2), (0.5 + 1e-4, 3), (0.25, 1), (0.75, 3), (1.0, 4)]:
        counts = Counter(sample_next(logits, top_p=top_p, generator=g).tolist())
        assert len(counts) == size, (top_p, counts)


def nucleus_by_hand(row: list[float], top_p: float) -> list[float]:
    """The nucleus of one row, in plain Python: walk the tokens from the most likely, keep each while the
    mass of those before it is below top_p."""
    kept, mass = [0.0] * len(row), 0.0
    for j in sorted(range(len(row)), key=lambda j: -row[j]):
        if mass >= top_p:
            break
        kept[j], mass = row[j], mass + row[j]
    return kept


@pytest.mark.assignment5
@pytest.mark.parametrize("sharpness", [0.3, 3.0, 8.0])  # flat: nucleus past the first 65 tokens; sharp: within
def test_nucleus_matches_a_hand_computation(sharpness):
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(torch.randn(64, 300, generator=g, dtype=torch.float64) * sharpness, -1)
    for top_p in (0.3, 0.9, 0.95):
        got = sampling.nucleus(probs, top_p)
        want = torch.tensor([nucleus_by_hand(row, top_p) for row in probs.tolist()], dtype=torch.float64)
        assert torch.allclose(got, want, rtol=0, atol=1e-12), (sharpness, top_p)


def test_nucleus_skips_the_full_sort_only_when_every_row_fits_the_head(monkeypatch):
    """Peaked rows (temperature 0.6 on a trained model) take the top-k path; one flat row in the batch sends
    it through the full sort, with the same answer as without the shortcut."""
    g = torch.Generator().manual_seed(6)
    peaked = torch.softmax(torch.randn(32, 300, generator=g) * 8, -1)
    sorts = []
    real_sort = torch.Tensor.sort
    monkeypatch.setattr(torch.Tensor, "sort", lambda self, *a, **kw: sorts.append(1) or real_sort(self, *a, **kw))
    fast = sampling.nucleus(peaked, 0.95)
    assert not sorts
    mixed = torch.cat([peaked, torch.full((1, 300), 1 / 300)])
    assert torch.equal(sampling.nucleus(mixed, 0.95)[:32], fast) and sorts == [1]
    assert int((sampling.nucleus(mixed, 0.95)[32] > 0).sum()) == 285  # 285 / 300 of the mass reaches 0.95
    monkeypatch.setattr(sampling, "NUCLEUS_HEAD", 300)  # a head as large as the vocabulary: the full sort
    assert torch.equal(sampling.nucleus(peaked, 0.95), fast)


def test_sample_next_rejects_bad_arguments():
    logits = torch.zeros(1, 5)
    for kw in (dict(temperature=-0.1), dict(top_p=0.0), dict(top_p=1.5), dict(top_p=-1.0)):
        with pytest.raises(ValueError):
            sample_next(logits, **kw)


def test_seeded_generation_is_reproducible():
    model = make_model(seed=3)
    run = lambda seed: generate(model, PROMPTS, 10, temperature=1.0, top_p=0.9,
                                generator=torch.Generator().manual_seed(seed))
    assert run(0) == run(0)
    assert run(0) != run(1)
    logits = torch.randn(3, 20)
    a = sample_next(logits, generator=torch.Generator().manual_seed(5))
    b = sample_next(logits, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generate_on_cuda_float32_model():
    # the cache is bf16 on CUDA; a float32 model must still generate (bf16 autocast inside generate)
    model = make_model(seed=4).cuda()
    outs = generate(model, PROMPTS, 8, temperature=0)
    assert [len(o) for o in outs] == [8] * len(PROMPTS)
    assert all(0 <= t < V for o in outs for t in o)


def prompts_with_staggered_stops(model) -> tuple[list[list[int]], list[int]]:
    """16 prompts of 1-8 tokens, and a stop set that ends most of their greedy continuations early (so generate
    drops those rows from the batch) and leaves several different rows running to the end."""
    from itertools import combinations
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, V, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (16,), generator=g)]
    free = generate(model, prompts, 12, temperature=0)

    def stopped_early(stop):
        return [any(t in o[:8] for t in stop) for o in free]
    candidates = [set(s) for r in (1, 2, 3) for s in combinations(sorted({t for o in free for t in o[:4]}), r)]
    good = [s for s in candidates if 2 * sum(stopped_early(s)) > len(prompts)
            and len({tuple(o) for o, e in zip(free, stopped_early(s)) if not e and not s & set(o)}) >= 3]
    assert good, "the test needs a stop set that ends most rows early and leaves several different rows running"
    return prompts, sorted(good[0])


@pytest.mark.parametrize("kind", KINDS)
def test_finished_rows_dropped_from_the_batch_do_not_change_the_others(kind):
    """Once most rows stop, generate compacts the batch and cache; the survivors (several, all different, so
    a mix-up of rows would show) must decode exactly as each would alone."""
    model = make_model(**KINDS[kind])
    prompts, stop = prompts_with_staggered_stops(model)
    outs = generate(model, prompts, 12, temperature=0, stop_ids=stop)
    assert_same_greedy(model, prompts, outs, [generate_no_cache(model, p, 12, stop_ids=stop) for p in prompts])
    assert sum(len(o) == 12 for o in outs) >= 3


# -- the static decode path (CUDA graphs) ------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_static_generate_matches_dynamic_greedy(kind):
    """Same tokens as the dynamic path while rows stop at different times (the dynamic path drops them, the
    static one decodes pad for them), and again from a reused cache that holds the last call's keys."""
    model = make_model(**KINDS[kind])
    prompts, stop = prompts_with_staggered_stops(model)
    want = generate(model, prompts, 12, temperature=0, stop_ids=stop)
    assert model not in sampling._static_caches  # the default on the CPU is the dynamic path
    assert_same_greedy(model, prompts, generate(model, prompts, 12, temperature=0, stop_ids=stop, static=True), want)
    assert len({len(o) for o in want}) >= 3 and max(map(len, want)) == 12
    others = [p[::-1] + [1] for p in prompts[8:] + prompts[:8]]  # same batch size: the cache is reused
    assert (generate(model, others, 12, temperature=0, static=True)
            == generate(model, others, 12, temperature=0))
    assert len(sampling._static_caches[model]) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_static_generate_matches_dynamic_sampled(kind):
    """Seeded sampling draws one random number per row and step on both paths as long as the dynamic path
    drops no row (here the stop token ends at most half of them), so the samples are the same."""
    model = make_model(**KINDS[kind])

    def run(**kw):
        return generate(model, PROMPTS, 12, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(7),
                        **kw)
    free = run()
    assert run(static=True) == free
    assert free != generate(model, PROMPTS, 12, temperature=0)  # really sampled
    stop = next(t for t in free[0][1:] if t not in free[0][:1] and sum(t in o for o in free) <= 2)
    outs = run(stop_ids=[stop])
    assert run(stop_ids=[stop], static=True) == outs
    assert 1 <= sum(len(o) < 12 for o in outs) <= 2


def test_static_generate_pads_the_rows_to_a_power_of_two():
    """3 prompts decode in a batch of 4 (one graph for every batch of 3 or 4 rows): the extra row is finished
    from the start and draws no random number, so the 3 rows' samples are the dynamic path's."""
    model = make_model()
    prompts = PROMPTS[:3]

    def run(**kw):
        return generate(model, prompts, 12, temperature=1.0, generator=torch.Generator().manual_seed(3), **kw)
    assert len(run(static=True)) == 3 and run(static=True) == run()
    assert [batch for batch, _, _ in sampling._static_caches[model]] == [4]
    generate(model, PROMPTS + [[2, 6]], 4, temperature=0, static=True)
    assert sorted(batch for batch, _, _ in sampling._static_caches[model]) == [4, 8]


@pytest.mark.parametrize("kind", KINDS)
def test_static_generate_under_cuda_emulation(kind, monkeypatch):
    """The CUDA branches on the CPU (bf16 autocast, a bf16 cache; no compiler), where the static loop is the
    default as on a GPU: the dynamic loop's greedy tokens."""
    monkeypatch.setenv("R1MINI_EMULATE_CUDA", "1")
    model = make_model(**KINDS[kind])
    free = generate(model, PROMPTS, 12, temperature=0, static=False)
    stop = [free[1][4]]  # ends one row part-way
    want = generate(model, PROMPTS, 12, temperature=0, stop_ids=stop, static=False)
    assert model not in sampling._static_caches
    assert_same_greedy(model, PROMPTS, generate(model, PROMPTS, 12, temperature=0, stop_ids=stop), want, tol=0.05)
    assert [dtype for _, _, dtype in sampling._static_caches[model]] == [torch.bfloat16]
    assert len({len(o) for o in want}) >= 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("emulate", ["0", "1"])
def test_static_decode_step_compiles_to_one_graph(kind, emulate, monkeypatch):
    """What a CUDA graph needs, checked on the CPU: torch.compile traces decode_step whole (fullgraph), with no
    value the host must read back from the device (an .item() or a data-dependent shape such as nonzero's: a
    host sync, which a CUDA graph cannot hold; fullgraph traces them as "unbacked" symbols rather than fail),
    once for prompts of any length at one batch size, and the traced step decodes the same tokens."""
    monkeypatch.setenv("R1MINI_EMULATE_CUDA", emulate)
    model = make_model(**KINDS[kind])
    batches = [PROMPTS, [[4], [9, 2], [30, 1, 5], [8, 8]]]  # prompts of at most 7 and 3 tokens
    want = [generate(model, prompts, 10, temperature=0, static=True) for prompts in batches]
    graphs, host_reads = [], []

    def backend(graph, example_inputs):  # records each graph and its data-dependent values; runs it as traced
        graphs.append(graph)
        host_reads.extend(node.name for node in graph.graph.nodes if node.meta.get("unbacked_bindings"))
        return graph.forward
    torch._dynamo.reset()
    monkeypatch.setattr(sampling, "decode_step", torch.compile(sampling.decode_step, backend=backend,
                                                               fullgraph=True, dynamic=False))
    assert [generate(model, prompts, 10, temperature=0, static=True) for prompts in batches] == want
    assert len(graphs) == 1
    assert host_reads == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_static_generate_on_cuda_compiled():
    """On CUDA the default is the static path under CUDA graphs; its tokens match the dynamic path's, on the
    call that records the graph and on calls that replay it (other prompt lengths, same batch size)."""
    model = make_model(seed=4).cuda()
    for prompts in (PROMPTS, [p[::-1] for p in PROMPTS], PROMPTS):
        assert generate(model, prompts, 12, temperature=0) == generate(model, prompts, 12, temperature=0,
                                                                       static=False)
    assert model in sampling._static_caches


@pytest.mark.parametrize("names", [("cache_size_limit",), ("cache_size_limit", "recompile_limit")])
def test_compiled_decode_step_raises_the_recompile_limit_on_any_torch(monkeypatch, names):
    """torch 2.7 renamed dynamo's cache_size_limit to recompile_limit; pyproject allows torch 2.5, where
    setting recompile_limit crashed every CUDA generate. A stand-in config with only the old name (2.5, 2.6),
    and one with both (2.7 on keeps the old one as an alias): the limit that exists is raised to 64."""
    import types
    config = types.SimpleNamespace(**{name: 8 for name in names})
    monkeypatch.setattr(torch._dynamo, "config", config)
    monkeypatch.setattr(torch, "compile", lambda fn, **options: fn)  # only the limit is under test
    assert sampling.compiled_decode_step.__wrapped__() is sampling.decode_step
    assert getattr(config, names[-1]) == 64


def test_prefill_makes_logits_for_the_last_position_only():
    """The prefill needs the next token's distribution after each prompt, not at every prompt position: float32
    logits of every position cost rows x prompt x vocabulary x 4 bytes (a 512-row rollout of an hf: model
    with 152k tokens: 31 GB). Measured: generation's whole peak stays under a tenth of that."""
    from r1mini.memory import measure_peak_bytes
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=20000, block_size=128, n_layer=1, n_head=2, n_kv_head=1, n_embd=32))
    prompts = torch.randint(0, 20000, (8, 100)).tolist()
    every_position = 8 * 100 * 20000 * 4  # 64 MB
    peak = measure_peak_bytes(lambda: generate(model, prompts, 2, temperature=0, static=False), "cpu")
    assert peak < every_position / 10


@pytest.mark.parametrize("kind", KINDS)
def test_prefill_runs_each_distinct_prompt_once(kind, monkeypatch):
    """A GRPO rollout repeats every prompt group_size times: the prefill runs each distinct prompt once (rows
    counted where they enter the model) and copies its keys and values to the rows that repeat it. The cache
    and the logits are a prefill of every row's, within float rounding (3 rows and 6 are other matmul
    shapes), and prompts alike once padded but of different lengths stay apart."""
    from r1mini.model import KVCache
    model = make_model(**KINDS[kind]).eval()
    prompts = [[5, 6, 7], [8, 9], [5, 6, 7], [0, 8, 9], [8, 9], [5, 6, 7]]  # [8, 9] pads to [0, 8, 9], pad id 0
    P, lengths = 3, torch.tensor([len(p) for p in prompts])
    idx = torch.tensor([[0] * (P - len(p)) + p for p in prompts])
    valid = torch.arange(P)[None] >= (P - lengths)[:, None]
    positions = (torch.arange(P)[None] - (P - lengths)[:, None]).clamp(min=0)
    caches = []
    for _ in range(2):
        caches.append(KVCache(model.cfg, len(prompts), P + 2, "cpu", torch.float32))
        caches[-1].valid[:, :P] = valid
    with torch.no_grad():
        every_row = model.head(model.norm(model.trunk(idx, positions, cache=caches[0])[:, -1]))
        rows, trunk = [], model.trunk
        monkeypatch.setattr(model, "trunk", lambda idx, *a, **kw: rows.append(len(idx)) or trunk(idx, *a, **kw))
        shared = sampling.prefill(model, caches[1], idx, positions)
    assert rows == [3]  # [5, 6, 7], [8, 9] and [0, 8, 9]
    assert caches[1].length == caches[0].length == P
    assert torch.allclose(shared, every_row, atol=1e-5)
    for ours, reference in ((caches[1].k, caches[0].k), (caches[1].v, caches[0].v)):
        assert torch.allclose(ours, reference, atol=1e-5)
    assert not torch.allclose(shared[1], shared[3], atol=1e-3)  # the short prompt and its padded twin differ


def test_the_compiled_decode_step_writes_the_cache_in_place():
    """On a GPU, decode_step runs compiled by Inductor. Written with index_copy_ into the layer's view of the
    cache, the compiled step allocated a copy of every layer's keys and values at every step (measured here:
    3.2 MB a step for a 1 MB cache; at the gpu preset's 512 rows, 3.2 GB, several times the step's own
    traffic). The compiled step must allocate far less than one layer's keys, and still write its slot."""
    from r1mini.memory import measure_peak_bytes
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=40, block_size=512, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)).eval()
    cache = sampling.static_cache(model, 16, torch.float32)
    cache.valid[:, :3] = True
    step = torch.compile(sampling.decode_step, fullgraph=True, dynamic=False)  # Inductor, on the CPU
    tok, positions = torch.randint(0, 40, (16, 1)), torch.full((16, 1), 3)
    with torch.no_grad():
        step(model, cache, tok, positions, torch.tensor([3]))  # compiles
        peak = measure_peak_bytes(lambda: step(model, cache, tok, positions, torch.tensor([4])), "cpu")
    one_layer_keys = cache.k[0].untyped_storage().nbytes() // model.cfg.n_layer  # 512 KB
    assert peak < one_layer_keys / 4
    assert (cache.k[:, :, :, 4] != 0).all() and (cache.v[:, :, :, 4] != 0).all()


def test_running_out_of_memory_in_the_compiled_step_is_not_a_compiler_failure(monkeypatch, capsys):
    """A compiler failure falls back to decoding eagerly (same tokens, slower); running out of memory used to be
    caught the same way, and the run went on eagerly, at a fraction of the speed, with one printed line.
    It must reach the caller (whose step_guard says what to lower), raised directly or from inside the
    compiler. (A stand-in compiled step: no GPU here.)"""
    model = make_model()
    monkeypatch.setattr(sampling, "uses_cuda_graphs", lambda device: True)

    def fails(error):
        def step(*args):
            raise error
        monkeypatch.setattr(sampling, "compiled_decode_step", lambda: step)

    wrapped = RuntimeError("backend compiler failed")
    wrapped.__cause__ = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    for error in (torch.cuda.OutOfMemoryError("CUDA out of memory"), wrapped):
        fails(error)
        with pytest.raises(Exception) as raised:
            generate(model, PROMPTS, 4, temperature=0, static=True)
        assert raised.value is error
    fails(RuntimeError("an unsupported op"))  # a real compiler failure: eager from then on, same tokens
    assert_same_greedy(model, PROMPTS, generate(model, PROMPTS, 4, temperature=0, static=True),
                       generate(model, PROMPTS, 4, temperature=0))
    assert "could not be compiled: RuntimeError: an unsupported op" in capsys.readouterr().out


def test_a_skipped_cuda_graph_is_reported(monkeypatch, capsys):
    """Inductor can compile the step and then not record it as a CUDA graph, saying so only in a counter and a
    log that is off by default: decoding then runs several times slower, silently. On the CPU every graph is
    skipped (no CUDA), so the real compiled step (mode reduce-overhead) shows the report; the tokens are the
    eager step's."""
    monkeypatch.setattr(sampling, "uses_cuda_graphs", lambda device: True)
    monkeypatch.setattr(sampling, "compiled_decode_step", sampling.compiled_decode_step.__wrapped__)
    model = make_model()
    want = generate(model, PROMPTS, 4, temperature=0)
    assert_same_greedy(model, PROMPTS, generate(model, PROMPTS, 4, temperature=0, static=True), want)
    assert "not running as a CUDA graph (1 skipped)" in capsys.readouterr().out
