"""How much memory a stage needs: its peak estimated from the model config and the batch shape, term by term
from what model.py's modules keep, and the largest micro-batch that fits a device.

A training step peaks at the start of its backward pass. Then it holds the weights, their gradients and
AdamW's two moments, every tensor the forward saved for the backward (the activations, `rows * seq_len`
tokens times the bytes per token below), and the float32 logits with the loss's buffers of the same size.
Generation holds the weights and the KV cache. A no-grad forward (scoring) holds one layer's tensors at a
time, then the logits.

    estimate_peak_bytes(cfg, "train", rows, seq_len, bf16=True)   # {"weights": ..., ..., "total": ...}
    auto_micro_batch(cfg, "train", rows, seq_len, device_memory_bytes(device), bf16=True)

Only the activations and the logits grow with the batch, so only a smaller micro-batch shrinks them.

The estimate is for eager PyTorch on one device: torch.compile fuses ops and saves less; DDP keeps a
bucketed copy of the gradients (4 more bytes per parameter); the CUDA caching allocator rounds sizes up and
fragments, which is why auto_micro_batch keeps a fifth of the budget in reserve. What generation keeps
between calls (the static decode loop's KV caches, CUDA graphs' memory pools) is no stage's: the budget
(device_memory_bytes) is what is left beside it. tests/test_memory.py checks
the activation term against the bytes a real forward saves (float32 and bf16 autocast, dense and MoE), and
benchmarks/bench_memory.py prints the estimate beside the measured peak of every stage.
"""
from __future__ import annotations

import os
import warnings
import weakref

import torch

from r1mini.device import cuda_paths, uses_bf16
from r1mini.model import ModelConfig

FLOAT32, BF16, INT64 = 4, 2, 8  # bytes per element
GiB = 2 ** 30
KINDS = ("train", "score", "generate")
# Per token, what a loss keeps besides the logits: the target ids (int64) and, for GRPO, the logsumexp and
# the handful of float32 (rows, T) tensors of grpo_loss (ratio, clipped ratio, both products, the mask...):
# 30-34 bytes measured, with and without the KL term.
LOSS_BYTES_PER_TOKEN = 40


def param_counts(cfg: ModelConfig) -> tuple[int, int]:
    """(parameters, matmul weights): every parameter of Transformer(cfg), and those that bf16 autocast casts
    and caches a bf16 copy of: the blocks' matrices. Not the embedding, which the head shares and uses in
    float32, not the MoE centroids, which route in float32, and not the norms."""
    C, hd = cfg.n_embd, cfg.head_dim
    attention = C * cfg.n_head * hd + C * 2 * cfg.n_kv_head * hd + cfg.n_head * hd * C  # wq, wkv, wo
    dense_ffn = 3 * C * cfg.ffn_hidden  # SwiGLU: w_gate_up (C x 2F) and w_down (F x C)
    moe_ffn = 3 * C * cfg.moe_hidden * (cfg.n_shared_experts + cfg.n_routed_experts)
    n_moe = moe_layer_count(cfg)
    matrices = cfg.n_layer * attention + (cfg.n_layer - n_moe) * dense_ffn + n_moe * moe_ffn
    centroids = n_moe * cfg.n_routed_experts * C
    norms = (2 * cfg.n_layer + 1) * C
    embeddings = cfg.vocab_size * C * (1 if cfg.tie_embeddings else 2)
    return matrices + centroids + norms + embeddings, matrices


def moe_layer_count(cfg: ModelConfig) -> int:
    return max(0, cfg.n_layer - cfg.first_dense_layers) if cfg.n_routed_experts else 0


def largest_matrix(cfg: ModelConfig) -> int:
    """Elements of the largest weight matrix inside the blocks (wq, wkv, wo, a SwiGLU's w_gate_up)."""
    C = cfg.n_embd
    hidden = max(cfg.ffn_hidden, cfg.moe_hidden * max(1, cfg.n_shared_experts))
    return max(C * C, C * 2 * cfg.n_kv_head * cfg.head_dim, C * 2 * hidden)


# -- activations: bytes saved for the backward pass, per token ---------------------------------------------------
# `a` is the bytes of an activation: 4 in float32, 2 under bf16 autocast, where every matmul returns bf16.
# The residual stream stays float32 under autocast (the embedding's output is float32, and float32 + bf16 is
# float32), and so do the RMSNorms, RoPE's tables and the head. C = n_embd, F = ffn_hidden, H = n_head.

def swiglu_bytes_per_token(dim: int, hidden: int, a: int) -> int:
    """A SwiGLU saves its input (a*C: the float32 input itself, or under autocast the bf16 copy its matmul
    makes), w_gate_up's output (2F: gate and up are views of it, saved by silu and by the product), silu(gate)
    (F) and the product (F, w_down's input)."""
    return a * dim + 4 * a * hidden


def moe_bytes_per_token(cfg: ModelConfig, a: int) -> int:
    """DeepSeekMoE's feed-forward. Exactly moe_top_k experts run on every token, so the routed part does not
    depend on how balanced the routing is."""
    C, E, k = cfg.n_embd, cfg.n_routed_experts, cfg.moe_top_k
    # router, in float32 even under autocast: its matmul's input (the norm's float32 output), the sigmoid
    # scores (E), the chosen expert ids (int64), the gates gathered from the scores and their sum
    router = FLOAT32 * C + FLOAT32 * E + INT64 * k + FLOAT32 * k + FLOAT32
    # shared expert: a SwiGLU of width moe_hidden * n_shared_experts; in float32 its input is the router's
    # (the same tensor, counted once), under autocast it makes its own bf16 copy
    shared = 0
    if cfg.n_shared_experts:
        shared = swiglu_bytes_per_token(C, cfg.moe_hidden * cfg.n_shared_experts, a) - (a * C if a == FLOAT32 else 0)
    # each of the k routed copies of a token: torch.where's two int64 ids (token, slot), the gathered row
    # (float32, or the expert's bf16 copy of it), the expert's SwiGLU less its input, the expert's output
    # (saved by the multiplication with the gate), the gate itself, and the gated output in float32 (index_add
    # saves its source)
    routed = (2 * INT64 + a * C + (swiglu_bytes_per_token(C, cfg.moe_hidden, a) - a * C) + a * C + FLOAT32
              + FLOAT32 * C)
    return router + shared + k * routed


def layer_bytes_per_token(cfg: ModelConfig, moe: bool, bf16: bool) -> int:
    """What one Block saves for the backward pass, per token."""
    a = BF16 if bf16 else FLOAT32
    C = cfg.n_embd
    # two RMSNorms, float32 whatever the autocast: each saves its input (the residual stream), its normalised
    # output before the weight (for the weight's gradient) and 1/rms
    norms = 2 * (FLOAT32 * C + FLOAT32 * C + FLOAT32)
    # the attention's input, the norm's float32 output: saved once by wq and wkv in float32, and under
    # autocast each of the two matmuls saves its own bf16 copy: 4C bytes either way
    attn_input = FLOAT32 * C
    # SDPA saves q, k, v and its output, k and v after GQA's repeat_interleave (n_head heads each: C wide),
    # and the float32 logsumexp of every query and head. RoPE saves only its cos/sin tables (counted once per
    # model below), not q or k: the gradient of a rotation needs only the angles.
    sdpa = 4 * a * C + FLOAT32 * cfg.n_head
    if cfg.n_kv_head == cfg.n_head:  # no GQA: v is a view of wkv's output, so all of it (k and v) stays
        sdpa += a * C
    out_proj = a * C  # wo's input: the heads transposed back to (B, T, C), a copy
    ffn = moe_bytes_per_token(cfg, a) if moe else swiglu_bytes_per_token(C, cfg.ffn_hidden, a)
    return norms + attn_input + sdpa + out_proj + ffn


def activation_bytes_per_token(cfg: ModelConfig, bf16: bool, checkpointing: bool = False) -> int:
    """Everything the model (not the loss) saves for the backward pass, per token of a (rows, seq_len) batch.

    With activation checkpointing (model.checkpoint_blocks, --activation_checkpointing) a block keeps only its
    input, the float32 residual stream, and its backward first runs it again: what the model keeps between
    layers, n_layer * 4C, plus one layer's activations while that layer is recomputed (the largest kind of
    layer present, dense or MoE)."""
    n_moe = moe_layer_count(cfg)
    if checkpointing:
        kinds = [moe for moe, n in ((True, n_moe), (False, cfg.n_layer - n_moe)) if n]
        layers = cfg.n_layer * FLOAT32 * cfg.n_embd + max(layer_bytes_per_token(cfg, moe, bf16) for moe in kinds)
    else:
        layers = (n_moe * layer_bytes_per_token(cfg, True, bf16)
                  + (cfg.n_layer - n_moe) * layer_bytes_per_token(cfg, False, bf16))
    # once per model: the token ids (the embedding's backward), RoPE's cos and sin at each position (head_dim/2
    # float32 each, shared by every layer), the final norm (input, normalised, 1/rms) and the head's float32
    # input (the final norm's output)
    model = INT64 + FLOAT32 * cfg.head_dim + (2 * FLOAT32 * cfg.n_embd + FLOAT32) + FLOAT32 * cfg.n_embd
    return layers + model


def logits_bytes_per_token(cfg: ModelConfig, kind: str) -> int:
    """The vocabulary-sized float32 buffers per token at the stage's peak (model.py's head is float32)."""
    V = cfg.vocab_size
    if kind == "train":
        # at the start of the backward, four (rows, T, V) tensors: pretraining/SFT hold the logits (returned to
        # the caller), their log-softmax (saved by the loss), its gradient and the logits' gradient; GRPO the
        # logits (saved by logsumexp) and the gradients of logsumexp, of gather and of the [:, :-1] slice
        return 4 * FLOAT32 * V + LOSS_BYTES_PER_TOKEN
    if kind == "score":
        # the logits and one temporary of their size: logsumexp's exp(logits - max), or cross-entropy's log-softmax
        return 2 * FLOAT32 * V
    return 0  # generate: the prefill's logits cover the prompt only, see estimate_peak_bytes


def forward_working_bytes_per_token(cfg: ModelConfig, bf16: bool) -> int:
    """The largest set of tensors alive at once inside one layer of a no-grad forward, per token: the
    residual stream and the norm's output (float32), then either the attention's q, k, v (expanded for
    GQA), the output and its transposed copy, or the feed-forward's gate/up, silu, product and output."""
    a = BF16 if bf16 else FLOAT32
    C = cfg.n_embd
    kv = 2 * cfg.n_kv_head * cfg.head_dim
    # q before and after RoPE, wkv's output (k and v) and the rotated k, the expanded k and v, SDPA's output,
    # its transposed copy and wo's output; and RoPE's float32 halves of q
    attention = a * (2 * C + kv + kv // 2 + 2 * C + 3 * C) + 2 * FLOAT32 * C
    hidden = cfg.ffn_hidden if not cfg.n_routed_experts else max(
        cfg.ffn_hidden, cfg.moe_hidden * (cfg.n_shared_experts + cfg.moe_top_k))
    # the matmul's input copy, gate/up, silu, product, output; MoE adds the float32 sum of the experts'
    # outputs, twice while index_add builds the next one
    ffn = a * (C + 4 * hidden + C) + (2 * FLOAT32 * C if cfg.n_routed_experts else 0)
    return 2 * FLOAT32 * C + FLOAT32 * C + max(attention, ffn)  # + the next residual, written beside the old


# -- the estimate ------------------------------------------------------------------------------------------------

def estimate_peak_bytes(cfg: ModelConfig, kind: str, rows: int, seq_len: int, *, bf16: bool,
                        prompt_len: int | None = None, optimizer_state: bool | None = None,
                        ref_model: bool = False, static: bool = False, checkpointing: bool = False) -> dict[str, int]:
    """The peak memory of one stage on one device, in bytes, by part, and their "total".

    kind: "train" (forward and backward of rows x seq_len tokens, then AdamW: pretraining, SFT, a GRPO update),
    "score" (a no-grad forward of rows x seq_len: GRPO's old and reference log-probs, evaluation) or
    "generate" (the KV cache of rows x seq_len slots, prompt and completion; the prompts, prompt_len tokens
    each, default seq_len, go through one prefill forward).
    bf16: under bf16 autocast (the CUDA paths on a GPU with bf16, r1mini.device.uses_bf16), else float32.
    optimizer_state: the gradients and AdamW's moments are resident (default: only for "train"; True for a
    GRPO rollout, which runs between updates). ref_model: a frozen float32 copy of the weights (GRPO, kl_coef > 0).
    static: "generate" by the static decode loop (sampling.decode_static), which never drops rows, so never
    copies its cache (pass seq_len = block_size, the slots it allocates). checkpointing: "train" with activation
    checkpointing, which keeps each block's input only (activation_bytes_per_token).

    Parts: weights (float32 parameters), weight_copies (bf16 autocast's cached copy of every matmul weight,
    kept until the autocast block ends, with or without grad; in float32 "generate" off the static loop, the
    decoding layout's float32 copy of them), grads (float32), optimizer (AdamW's exp_avg
    and exp_avg_sq, float32), activations (saved for the backward), logits (float32, vocabulary-sized),
    cache (KV cache), working (transients: a weight's gradient before it is added to .grad; the tensors of
    one layer of a no-grad forward or of a decoding step). "total" is their sum, except that a no-grad
    forward frees each layer's tensors before the head makes the logits: there it counts the larger of
    logits and working.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if rows < 0 or seq_len <= 0:
        raise ValueError(f"need rows >= 0 and seq_len > 0, got rows={rows}, seq_len={seq_len}")
    n_params, n_matmul = param_counts(cfg)
    tokens = rows * seq_len
    a = BF16 if bf16 else FLOAT32
    if optimizer_state is None:
        optimizer_state = kind == "train"
    parts = {
        "weights": FLOAT32 * n_params * (2 if ref_model else 1),
        "weight_copies": BF16 * n_matmul if bf16 else 0,
        "grads": FLOAT32 * n_params if optimizer_state else 0,
        "optimizer": 2 * FLOAT32 * n_params if optimizer_state else 0,  # AdamW's m and v; fused or not, the
        # step's temporaries come after the backward has freed the activations, and are smaller
        "activations": 0, "logits": 0, "cache": 0, "working": 0,
    }
    if kind == "train":
        parts["activations"] = tokens * activation_bytes_per_token(cfg, bf16, checkpointing)
        parts["logits"] = tokens * logits_bytes_per_token(cfg, "train")
        # a weight's gradient is computed whole before it is added to .grad (bf16 under autocast, then
        # its float32 cast); the head's, in float32, is vocab_size x n_embd
        parts["working"] = max((FLOAT32 + (BF16 if bf16 else 0)) * largest_matrix(cfg),
                               FLOAT32 * cfg.vocab_size * cfg.n_embd)
    elif kind == "score":
        parts["logits"] = tokens * logits_bytes_per_token(cfg, "score")
        parts["working"] = tokens * forward_working_bytes_per_token(cfg, bf16)
    else:
        prompt = seq_len if prompt_len is None else min(prompt_len, seq_len)
        if not bf16 and not static:  # the CPU's dynamic loop decodes on a float32 copy of the blocks' matrices
            parts["weight_copies"] = FLOAT32 * n_matmul  # laid out for it (model.Transformer.decoding)
        kv = 2 * cfg.n_layer * rows * cfg.n_kv_head * seq_len * cfg.head_dim * a  # keys and values
        # sampling.generate drops finished rows by copying the rest (under half) while the old cache is alive
        parts["cache"] = kv + (0 if static else kv // 2) + rows * seq_len  # + the validity mask, one bool a slot
        # one step's logits (the prefill's too: the head runs at the last prompt position only) and sampling's
        # float32 copies of them (probabilities, top-p's sorted copy and its int64 order, the cumulative
        # sums...), about 12 per row
        parts["logits"] = rows * 13 * FLOAT32 * cfg.vocab_size
        # the prefill's layer working set, or a decoding step's: attention reads the cache in place
        # (model.attend_to_cache) and at most scores every slot of every head in float32
        decode = rows * seq_len * cfg.n_head * FLOAT32
        parts["working"] = max(rows * prompt * forward_working_bytes_per_token(cfg, bf16), decode)
    static = sum(parts[k] for k in ("weights", "weight_copies", "grads", "optimizer", "cache"))
    if kind == "train":  # all at once at the start of the backward
        parts["total"] = static + parts["activations"] + parts["logits"] + parts["working"]
    else:  # without grad the layers' tensors are freed before the head makes the logits
        parts["total"] = static + max(parts["logits"], parts["working"])
    return parts


MEMORY_LIMIT = "R1MINI_MEMORY_GIB"  # a budget in GiB for every stage, on any device (e.g. a shared GPU)


def device_memory_bytes(device: torch.device | str, limit_gib: float | None = None) -> int | None:
    """The memory a stage on `device` may use in all (weights included): limit_gib when given, else the
    environment's R1MINI_MEMORY_GIB when set; on CUDA the device's free memory plus what this process's
    caching allocator already holds, within its per-process fraction; None elsewhere (unknown: no limit).
    Less, either way, what generation
    holds between calls (held_bytes), which the stages' estimates do not count."""
    if limit_gib is None and os.environ.get(MEMORY_LIMIT):
        limit_gib = float(os.environ[MEMORY_LIMIT])
    device = torch.device(device)
    if limit_gib is None and device.type != "cuda":
        return None
    if limit_gib is not None:
        budget = int(limit_gib * GiB)
    else:
        free, total = torch.cuda.mem_get_info(device)
        budget = free + torch.cuda.memory_reserved(device)
        # a cap set with torch.cuda.set_per_process_memory_fraction (a shared GPU; benchmarks/gpu_check.sh
        # stands in for smaller cards so): its reader came after torch 2.5
        fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
        if fraction is not None:
            budget = min(budget, int(fraction(device) * total))
    return budget - held_bytes(device)


# tensors kept allocated between calls that no stage's estimate counts: the static decode path's KV caches
# (block_size slots for every row, one per model and batch size, alive as long as their model)
_held: weakref.WeakSet = weakref.WeakSet()


def hold(*tensors: torch.Tensor) -> None:
    """Count these tensors against every budget for as long as they live (sampling.static_cache)."""
    _held.update(tensors)


def held_bytes(device: torch.device | str) -> int:
    """Memory on `device` that stays taken between calls and that no stage's estimate counts: the tensors
    hold() was given that are still alive and, on CUDA, the CUDA graphs' private memory pools (reserved,
    so counted free by device_memory_bytes, but usable by nothing else)."""
    device = torch.device(device)
    where = (device.type, device.index or 0)
    tensors = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in list(_held)
               if (t.device.type, t.device.index or 0) == where}
    return sum(tensors.values()) + graph_pool_bytes(device)


def graph_pool_bytes(device: torch.device) -> int:
    """Bytes of the CUDA caching allocator's private pools on `device` (CUDA graphs record into them); 0 off
    CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return 0
    index = device.index if device.index is not None else torch.cuda.current_device()
    return sum(s["total_size"] for s in torch.cuda.memory_snapshot()
               if s.get("device", index) == index and tuple(s.get("segment_pool_id", (0, 0))) != (0, 0))


def auto_micro_batch(cfg: ModelConfig, kind: str, rows: int, seq_len: int, budget_bytes: int | None, *,
                     bf16: bool, margin: float = 0.8, advice: str | None = None, **options) -> int:
    """The largest micro-batch (rows per chunk, at most `rows`) whose estimated peak fits in margin * budget.
    No budget (None): all rows. If not even one row fits, warns, saying what to lower, and returns 1.
    `options` go to estimate_peak_bytes (prompt_len, optimizer_state, ref_model); `advice` replaces the
    warning's suggestion with the stage's own flags."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if budget_bytes is None:
        return rows
    usable = margin * budget_bytes

    def peak(m: int) -> int:
        return estimate_peak_bytes(cfg, kind, m, seq_len, bf16=bf16, **options)["total"]

    if peak(1) > usable:
        fixed = peak(0)
        if fixed > usable:
            what = (f"the weights and optimizer state alone need ~{fixed / GiB:.1f} GiB",
                    "use a smaller --preset")
        else:
            what = (f"one row of {seq_len} tokens needs ~{peak(1) / GiB:.1f} GiB",
                    "lower the sequence length (--max_new_tokens for GRPO and generation; pretraining and SFT "
                    "train on block_size tokens: use a smaller --preset)")
        warnings.warn(f"{kind}: {what[0]}, over {margin:.0%} of the {budget_bytes / GiB:.1f} GiB budget; "
                      f"{advice or what[1]}. Trying micro-batches of 1 row.", stacklevel=2)
        return 1
    lo, hi = 1, rows  # peak(lo) fits; the peak grows with the rows, so bisect for the largest that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if peak(mid) <= usable else (lo, mid - 1)
    return lo


def micro_batch(model: torch.nn.Module, kind: str, rows: int, seq_len: int, requested: int = 0, **options) -> int:
    """The rows per micro-batch a stage runs: `requested` when > 0 (a --micro_batch_size flag wins), else the
    most that fit the device's memory (auto_micro_batch), counting the model's activation checkpointing
    (model.checkpoint_blocks) in a training step; all rows where the memory is unknown (the CPU, unless
    R1MINI_MEMORY_GIB is set), which is what every CPU run has always done."""
    if requested > 0 or rows < 1:
        return requested
    device = next(model.parameters()).device
    if kind == "train":
        options.setdefault("checkpointing", bool(getattr(model, "checkpoint_blocks", False)))
    return auto_micro_batch(model.cfg, kind, rows, seq_len, device_memory_bytes(device), bf16=uses_bf16(device),
                            **options)


GENERATION_ROWS = 512  # the most rows a generation batch takes on a device whose memory is known
# elsewhere (the CPU): 2 cores decode the cpu-preset model at 7.9k tokens/s in 64 rows, 12.8k in 256
CPU_GENERATION_ROWS = 256


def generation_batch(model: torch.nn.Module, seq_len: int, requested: int = 0) -> int:
    """Rows per generation batch (evaluation, sampling for SFT data) of sequences up to seq_len tokens:
    `requested` when > 0; on a device whose memory is known, up to GENERATION_ROWS as they fit (a GPU decodes
    512 rows in about the time of 64), a power of two on the CUDA paths (what generate's static loop
    allocates); else CPU_GENERATION_ROWS."""
    if requested > 0:
        return requested
    device = next(model.parameters()).device
    budget = device_memory_bytes(device)
    if budget is None:
        return CPU_GENERATION_ROWS
    cfg, bf16 = model.cfg, uses_bf16(device)
    if not cuda_paths(device):  # the dynamic decode loop: a cache of seq_len slots for exactly these rows
        return auto_micro_batch(cfg, "generate", GENERATION_ROWS, seq_len, budget, bf16=bf16)
    # the static loop, generate's default on the CUDA paths, pads the rows to a power of two and keeps a cache
    # of block_size slots: the most rows that fit so, rounded down to a power of two
    rows = auto_micro_batch(cfg, "generate", GENERATION_ROWS, cfg.block_size, budget, bf16=bf16, static=True,
                            prompt_len=seq_len)
    return 1 << (rows.bit_length() - 1)


# -- measuring (tests/test_memory.py, benchmarks/bench_memory.py) ---------------------------------------------------

def measure_saved_bytes(fn, model: torch.nn.Module) -> dict[str, int]:
    """Run fn() (a forward that returns what the backward would start from) and count, once per storage, the
    bytes of every tensor autograd saves for the backward: {"activations", "weight_copies"} (autocast's
    bf16 copies of parameters); the parameters themselves are not counted."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, tuple[str, torch.Tensor]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in saved:
            saved[ptr] = ("weight_copies" if _is_weight_copy(t) else "activations", t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    counts = {"activations": 0, "weight_copies": 0}
    for kind, t in saved.values():
        counts[kind] += t.untyped_storage().nbytes()
    del out
    return counts


def _is_weight_copy(t: torch.Tensor) -> bool:
    """Whether t is (a view of) autocast's cast of a parameter: ToCopyBackward0 straight onto a leaf's
    AccumulateGrad, behind any transposes or views (a linear saves its weight transposed)."""
    fn = t.grad_fn
    views = ("TBackward0", "TransposeBackward0", "ViewBackward0")
    while fn is not None and fn.name() in views:
        fn = fn.next_functions[0][0]
    if fn is None or fn.name() != "ToCopyBackward0":
        return False
    fn = fn.next_functions[0][0]  # MoE casts centroids.t(), a view: not cached, but still a copy of a weight
    while fn is not None and fn.name() in views:
        fn = fn.next_functions[0][0]
    return hasattr(fn, "variable")  # AccumulateGrad: the parameter itself


def measure_peak_bytes(fn, device: torch.device | str) -> int:
    """The peak of the bytes allocated while fn() runs, above what was allocated when it started: CUDA's
    allocator statistics, or on the CPU the profiler's record of every allocation and free."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak
