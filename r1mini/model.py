"""The transformer: a small decoder-only model in the Llama/DeepSeek family.

RMSNorm before each block, rotary position embeddings (RoPE), grouped-query attention through
F.scaled_dot_product_attention (flash kernels on CUDA), a SwiGLU feed-forward, and optionally a
DeepSeekMoE feed-forward (DeepSeek-V3 §2.1.2): a few shared experts every token goes through plus many
small routed experts, sigmoid affinities, top-k routing normalised over the chosen experts, and
auxiliary-loss-free load balancing (a per-expert bias that only affects *which* experts are chosen,
nudged after every optimizer step). A KV cache makes generation cost O(1) forward passes per token.

DeepSeek-V3's two other ideas, off by default: multi-head latent attention (`attn="mla"`, LatentAttention:
keys and values from a low-rank latent, a cache of the latent and one RoPE key per token, an absorbed
decode) and multi-token prediction (`mtp_depth` = D MTP modules, MTPModule: each predicts one more token
ahead; their loss is added in pretraining, and the first drafts tokens for speculative decoding).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


@dataclass
class ModelConfig:
    vocab_size: int = 1024
    block_size: int = 256  # longest sequence (prompt + completion) the model is trained for
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2  # grouped-query attention: n_head / n_kv_head query heads share each K/V head
    n_embd: int = 128
    ffn_hidden: int = 0  # 0: derived in __post_init__ (SwiGLU's 8/3 * n_embd, rounded up to 32)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    # DeepSeekMoE: 0 routed experts means a dense model
    n_routed_experts: int = 0
    n_shared_experts: int = 1
    moe_top_k: int = 2
    moe_hidden: int = 0  # hidden size of one expert; 0: ffn_hidden // (moe_top_k + n_shared_experts)
    moe_bias_update: float = 1e-3  # gamma, the bias update speed of aux-loss-free balancing
    first_dense_layers: int = 1  # DeepSeek-V3 keeps the first layers dense
    # options that real checkpoints need (r1mini/hf.py), all off by default
    attn_bias: bool = False  # biases on the q, k and v projections (Qwen2)
    qk_norm: bool = False  # RMSNorm over each head's q and k before RoPE (Qwen3)
    attn_head_dim: int = 0  # 0: n_embd // n_head; else the head size, apart from n_embd and n_head (Qwen3)
    # Llama 3.1's: rope_type "llama3", factor, low/high_freq_factor, original_max_position_embeddings
    rope_scaling: dict | None = None
    # multi-head latent attention (DeepSeek-V2 §2.1); every 0 below is derived in __post_init__ when attn="mla"
    attn: str = "gqa"  # "gqa" (grouped-query) or "mla" (multi-head latent attention, latent KV cache)
    q_lora_rank: int = 0  # d_c': rank of the query latent (0: n_embd // 2)
    kv_lora_rank: int = 0  # d_c: rank of the key/value latent, what the cache holds per token (0: n_embd // 2)
    qk_nope_head_dim: int = 0  # d_h: per-head query/key size without position (0: head_dim)
    qk_rope_head_dim: int = 0  # d_h^R: size of the RoPE query per head and of the one RoPE key (0: head_dim // 2)
    v_head_dim: int = 0  # per-head value size (0: head_dim)
    # multi-token prediction (DeepSeek-V3 §2.2)
    mtp_depth: int = 0  # D: MTP modules, each predicting one token further ahead; 0: none

    def __post_init__(self):
        if (self.n_embd % self.n_head and not self.attn_head_dim) or self.n_head % self.n_kv_head:
            raise ValueError(f"n_embd ({self.n_embd}) must divide by n_head ({self.n_head}) (or attn_head_dim be "
                             f"given) and n_head by n_kv_head ({self.n_kv_head})")
        if self.head_dim % 2 or self.attn_head_dim < 0:
            raise ValueError(f"the head size ({self.head_dim}) must be positive and even for RoPE")
        if self.rope_scaling is not None and self.rope_scaling.get("rope_type") != "llama3":
            raise ValueError(f"rope_scaling {self.rope_scaling} is not supported: only rope_type 'llama3' is")
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_embd) <= 0:
            raise ValueError("vocab_size, block_size, n_layer and n_embd must be positive")
        if self.ffn_hidden <= 0:
            self.ffn_hidden = 32 * math.ceil(8 * self.n_embd / 3 / 32)
        if self.n_routed_experts:
            if not 0 < self.moe_top_k <= self.n_routed_experts:
                raise ValueError(f"moe_top_k must be in 1..n_routed_experts ({self.n_routed_experts})")
            if self.moe_hidden <= 0:
                self.moe_hidden = max(8, self.ffn_hidden // (self.moe_top_k + self.n_shared_experts))
        if self.attn not in ("gqa", "mla"):
            raise ValueError(f"attn must be 'gqa' or 'mla', got {self.attn!r}")
        if self.mtp_depth < 0:
            raise ValueError(f"mtp_depth must be >= 0 (0: no MTP modules), got {self.mtp_depth}")
        if self.attn == "mla":
            derived = dict(q_lora_rank=self.n_embd // 2, kv_lora_rank=self.n_embd // 2,
                           qk_nope_head_dim=self.head_dim, qk_rope_head_dim=self.head_dim // 2,
                           v_head_dim=self.head_dim)
            for name, value in derived.items():
                if getattr(self, name) <= 0:
                    setattr(self, name, value)
            if self.qk_rope_head_dim % 2:
                raise ValueError(f"qk_rope_head_dim must be even for RoPE, got {self.qk_rope_head_dim}")

    @property
    def head_dim(self) -> int:
        return self.attn_head_dim or self.n_embd // self.n_head

    @property
    def rope_dim(self) -> int:
        """The size RoPE rotates: the whole head, or only MLA's decoupled part."""
        return self.qk_rope_head_dim if self.attn == "mla" else self.head_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**d)


# Named sizes. vocab_size is overwritten by the tokenizer actually trained; *-student presets are the
# smaller models that distill.py teaches.
PRESETS: dict[str, dict] = {
    "toy": dict(block_size=192, n_layer=2, n_head=2, n_kv_head=1, n_embd=32),
    "toy-student": dict(block_size=192, n_layer=1, n_head=2, n_kv_head=1, n_embd=32),
    "cpu": dict(block_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=128),
    "cpu-student": dict(block_size=256, n_layer=3, n_head=4, n_kv_head=2, n_embd=96),  # docs/runs/student_sweep.md
    "gpu": dict(block_size=512, n_layer=12, n_head=8, n_kv_head=4, n_embd=512),
    "gpu-student": dict(block_size=512, n_layer=6, n_head=8, n_kv_head=4, n_embd=256),
}


def model_config(preset: str, **overrides) -> ModelConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[preset], **overrides})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # normalise in float32: bf16 sums of squares lose too much precision
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(head_dim: int, length: int, theta: float,
                scaling: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles pos * theta^(-2i/d), d = head_dim: float32 tables of shape
    (length, head_dim // 2), row pos, column i = 0 .. d/2 - 1. `scaling`: Llama 3's long-context rescaling
    of the frequencies (llama3_frequencies), None for none."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    if scaling is not None:
        inv_freq = llama3_frequencies(inv_freq, scaling)
    angles = torch.outer(torch.arange(length).float(), inv_freq)
    return angles.cos(), angles.sin()


def llama3_frequencies(inv_freq: torch.Tensor, s: dict) -> torch.Tensor:
    """Llama 3.1's RoPE scaling for long contexts: frequencies whose wavelength fits the original context
    many times stay, those with wavelengths longer than it are divided by `factor`, and the band in between
    is interpolated smoothly between the two."""
    original, factor = s["original_max_position_embeddings"], s["factor"]
    low, high = s["low_freq_factor"], s["high_freq_factor"]
    wavelen = 2 * math.pi / inv_freq
    smooth = (original / wavelen - low) / (high - low)  # 0 at wavelength original / low, 1 at original / high
    interpolated = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = torch.where(wavelen > original / low, inv_freq / factor, inv_freq)
    return torch.where((wavelen >= original / high) & (wavelen <= original / low), interpolated, scaled)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of dimensions of each head by the angles of its position. x: (B, H, T, D); cos/sin: (B, 1, T,
    D/2) or anything that broadcasts to it (rope_tables' rows of each position). Returns x's shape and dtype,
    computed in float32.

    The "rotate half" layout of Llama/GPT-NeoX (and of their checkpoints): dimension i pairs with i + D/2,
    not 2i with 2i + 1, and angle i turns (x_i, x_{i+D/2}) into
    (x_i cos - x_{i+D/2} sin, x_i sin + x_{i+D/2} cos).
    """
    x1, x2 = x.float().chunk(2, dim=-1)  # x_i and x_{i+D/2}
    # addcmul(a, b, c, value=v) = a + v * b * c: five operations where the plain expression takes seven
    return torch.cat([torch.addcmul(x1 * cos, x2, sin, value=-1), torch.addcmul(x1 * sin, x2, cos)], dim=-1).type_as(x)


def write_slots(cache: torch.Tensor, layer: int, slots: torch.Tensor, values: torch.Tensor) -> None:
    """cache[layer, :, :, slots] = values (B, heads, T, dim), in place, written as one index_put_ on the whole
    cache with an index tensor for every dimension: compiled by Inductor (the CUDA-graph decode step),
    index_copy_ or an assignment into the layer's view became a copy of the layer's whole cache at every step
    (tests/test_sampling.py measures what the compiled step allocates)."""
    B, H = cache.shape[1:3]
    where = (torch.tensor(layer, device=slots.device), torch.arange(B, device=slots.device)[:, None, None],
             torch.arange(H, device=slots.device)[None, :, None], slots[None, None, :])
    cache.index_put_(where, values.to(cache.dtype))


class KVCache:
    """Preallocated keys and values for every layer: (n_layer, B, n_kv_head, max_len, head_dim).

    Sequences in a batch are left-padded to a common length; `valid` marks the real (non-pad) slots so
    attention ignores the padding, and `length` is the number of slots filled so far.

    Two ways to write. The dynamic one (`slots` None) appends after `length` and returns only the filled
    slots, so each step's attention grows by one. The static one (`slots` a tensor of slot indices, for a
    decode step captured as a CUDA graph) writes at those slots and returns the whole cache: every step then
    has the same shapes and no Python int that changes, and the mask hides the slots not yet written.
    `length` counts the dynamic writes only. A model with MTP modules gets one more layer per module, for
    speculative decoding's drafts (sampling.decode_speculative).

    Attributes the model and generation read: k, v (n_layer, B, n_kv_head, max_len, head_dim) in `dtype`,
    zeros at first; valid (B, max_len) bool, all False at first (the caller marks the real slots); length
    (int, 0 at first); max_len. update(layer, k, v) takes the new keys and values of one layer, (B,
    n_kv_head, T, head_dim), and returns that layer's keys and values to attend to.

    With MLA (cfg.attn "mla") the cache holds no per-head keys or values: `k` holds the latent c_kv
    (n_layer, B, 1, max_len, kv_lora_rank) and `v` the RoPE key k_pe shared by every head
    (n_layer, B, 1, max_len, qk_rope_head_dim), written and read the same two ways.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device, dtype):
        layers = cfg.n_layer + cfg.mtp_depth  # an MTP module's block caches after the main ones (drafting)
        if cfg.attn == "mla":
            k_shape = (layers, batch_size, 1, max_len, cfg.kv_lora_rank)
            v_shape = (layers, batch_size, 1, max_len, cfg.qk_rope_head_dim)
        else:
            k_shape = v_shape = (layers, batch_size, cfg.n_kv_head, max_len, cfg.head_dim)
        self.k = torch.zeros(k_shape, device=device, dtype=dtype)
        self.v = torch.zeros(v_shape, device=device, dtype=dtype)
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               slots: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one layer's new keys and values, k and v (B, n_kv_head, T, head_dim), in the cache's dtype,
        and return that layer's keys and values to attend to.

        Dynamic (slots None): write slots length .. length + T - 1 and return slots 0 .. length + T - 1.
        `length` is not changed here: Transformer.trunk advances it once all layers have written.
        Static (slots a (T,) tensor of slot indices): write those slots and return all max_len slots.
        """
        if slots is not None:  # static: the slots come as a tensor
            write_slots(self.k, layer, slots, k)
            write_slots(self.v, layer, slots, v)
            return self.k[layer], self.v[layer]
        T = k.size(2)
        self.k[layer, :, :, self.length:self.length + T] = k
        self.v[layer, :, :, self.length:self.length + T] = v
        end = self.length + T
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def attend_to_cache(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention of new queries q (B, H, T, D) over cached keys and values k, v (B, H_kv, S, D) under a boolean
    mask (B, 1, T, S); returns (B, H, T, D).

    The H / H_kv query heads that share a K/V head are folded into the query axis, (B, H_kv, H / H_kv * T, D)
    (head g * rep + r, token t at row r * T + t), so SDPA sees as many query heads as K/V heads. With a mask
    and enable_gqa instead, CUDA's flash kernel (no masks) and, in several torch releases, its memory-
    efficient one (no GQA) are ruled out, and the math path copies K and V to every head, in every layer, at
    every step."""
    B, H, T, D = q.shape
    rep = H // k.size(1)
    if rep > 1:
        q = q.reshape(B, k.size(1), rep * T, D)
        mask = mask if T == 1 else mask.repeat(1, 1, rep, 1)  # one token: its mask row broadcasts over the heads
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).reshape(B, H, T, D)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.n_embd, cfg.n_head * hd, bias=cfg.attn_bias)
        self.wkv = nn.Linear(cfg.n_embd, 2 * cfg.n_kv_head * hd, bias=cfg.attn_bias)
        self.wo = nn.Linear(cfg.n_head * hd, cfg.n_embd, bias=False)
        if cfg.qk_norm:  # one RMSNorm over the head_dim of every head (Qwen3), shared by all heads
            self.q_norm, self.k_norm = RMSNorm(hd, cfg.norm_eps), RMSNorm(hd, cfg.norm_eps)

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0, mask=None, slots=None):
        if cache is not None:
            return self.decode(x, cos, sin, cache, layer, mask, slots)
        B, T, _ = x.shape
        cfg = self.cfg
        q = self.wq(x).view(B, T, cfg.n_head, cfg.head_dim).transpose(1, 2)
        k, v = self.wkv(x).view(B, T, 2, cfg.n_kv_head, cfg.head_dim).permute(2, 0, 3, 1, 4)
        if cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cfg.n_kv_head != cfg.n_head:  # GQA: each K/V head serves n_head // n_kv_head query heads
            rep = cfg.n_head // cfg.n_kv_head
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))

    def decode(self, x, cos, sin, cache: KVCache, layer: int, mask, slots=None):
        """forward over the cache (prefill and decode steps): the same arithmetic in fewer operations, since a
        decode step's matmuls are tiny and each operation costs more than its arithmetic (benchmarks/README.md
        measures it). q, k and v come from one matmul over wq and wkv stacked (wq's rows, then k's and v's),
        and q and k are rotated together by one RoPE; their keys and values go to the cache and attention
        runs over it, with no copy of it per step."""
        B, T, _ = x.shape
        cfg = self.cfg
        H, H_kv = cfg.n_head, cfg.n_kv_head
        w_qkv, b_qkv, w_o = self.prepared or self.decode_weights()
        qkv = F.linear(x, w_qkv, b_qkv).view(B, T, H + 2 * H_kv, cfg.head_dim).transpose(1, 2)
        if cfg.qk_norm:  # q and k normed by their own weights, then rotated
            q, k = apply_rope(self.q_norm(qkv[:, :H]), cos, sin), apply_rope(self.k_norm(qkv[:, H:H + H_kv]), cos, sin)
        else:
            q, k = apply_rope(qkv[:, :H + H_kv], cos, sin).split([H, H_kv], dim=1)
        k, v = cache.update(layer, k, qkv[:, H + H_kv:], slots)
        return F.linear(attend_to_cache(q, k, v, mask).transpose(1, 2).reshape(B, T, -1), w_o)

    prepared = None  # decode_weights() in column-major memory while Transformer.decoding() runs, else None

    def decode_weights(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The weights decode multiplies by: wq's and wkv's stacked into one matrix ((n_head + 2 n_kv_head)
        head_dim, n_embd), their biases stacked (or None), and wo's. The stacking is a copy, made at every
        call unless Transformer.decoding() made it once; cheaper than the matmul it saves either way. The
        parameters keep their own layout, which checkpoints, Hugging Face export (r1mini/hf.py) and training
        use (two matmuls, whose backward saves no stacked copy)."""
        bias = None if self.wq.bias is None else torch.cat([self.wq.bias, self.wkv.bias])
        return torch.cat([self.wq.weight, self.wkv.weight]), bias, self.wo.weight


class LatentAttention(nn.Module):
    """Multi-head latent attention (DeepSeek-V2 §2.1, eqs. 9-19). Keys and values come from one low-rank
    latent c_kv = W_DKV x per token (kv_lora_rank values), queries from their own latent c_q = W_DQ x. Each
    head's key is [W_UK c_kv ; k_pe]: a part without position, and RoPE applied only to the decoupled key
    k_pe = RoPE(W_KR x), one for all heads (RoPE in the latent's keys would tie W_UK to the position and
    forbid the absorption below). The cache holds only c_kv and k_pe.

    Decoding (a cache given, `absorb` True) never expands the latent per head (V2 §2.1.2): since
    q_nope . (W_UK c) = (W_UK^T q_nope) . c, the query is folded into the latent space once, the scores and
    the weighted sum run over the cached latents directly, and W_UV is applied to the one weighted latent
    per head. With `absorb` False, decoding expands every cached latent into per-head keys and values (the
    naive form, for the tests). Training (no cache) uses the naive form, the cheaper one for full sequences.
    """

    absorb = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        H, qk_dim = cfg.n_head, cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        self.wq_a = nn.Linear(cfg.n_embd, cfg.q_lora_rank, bias=False)  # W_DQ
        self.q_norm = RMSNorm(cfg.q_lora_rank, cfg.norm_eps)
        self.wq_b = nn.Linear(cfg.q_lora_rank, H * qk_dim, bias=False)  # W_UQ and W_QR
        self.wkv_a = nn.Linear(cfg.n_embd, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=False)  # W_DKV, W_KR
        self.kv_norm = RMSNorm(cfg.kv_lora_rank, cfg.norm_eps)
        self.wkv_b = nn.Linear(cfg.kv_lora_rank, H * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)  # W_UK, W_UV
        self.wo = nn.Linear(H * cfg.v_head_dim, cfg.n_embd, bias=False)
        self.scale = 1 / math.sqrt(qk_dim)

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0, mask=None, slots=None):
        B, T, _ = x.shape
        cfg = self.cfg
        q = self.wq_b(self.q_norm(self.wq_a(x))).view(B, T, cfg.n_head, -1).transpose(1, 2)
        q_nope, q_pe = q.split([cfg.qk_nope_head_dim, cfg.qk_rope_head_dim], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)
        c_kv, k_pe = self.wkv_a(x).split([cfg.kv_lora_rank, cfg.qk_rope_head_dim], dim=-1)
        c_kv, k_pe = self.kv_norm(c_kv)[:, None], apply_rope(k_pe[:, None], cos, sin)  # (B, 1, T, .)
        if cache is not None:
            c_kv, k_pe = cache.update(layer, c_kv, k_pe, slots)  # every cached slot: (B, 1, S, .)
            if self.absorb:  # in float32, as its docstring says: autocast would run its einsums in bf16
                with torch.autocast(x.device.type, enabled=False):
                    y = self.absorbed(q_nope, q_pe, c_kv, k_pe, mask)
                return self.wo(y.transpose(1, 2).reshape(B, T, -1))
        k_nope, v = self.wkv_b(c_kv).view(B, -1, cfg.n_head, cfg.qk_nope_head_dim + cfg.v_head_dim).transpose(1, 2) \
            .split([cfg.qk_nope_head_dim, cfg.v_head_dim], dim=-1)
        k = torch.cat([k_nope, k_pe.expand(-1, cfg.n_head, -1, -1).type_as(k_nope)], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        else:
            y = F.scaled_dot_product_attention(q, k, v.type_as(q), attn_mask=mask, scale=self.scale)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))

    def absorbed(self, q_nope, q_pe, c_kv, k_pe, mask):
        """Attention over the cached latents (B, 1, S, d_c) and RoPE keys (B, 1, S, d_h^R) for the queries
        (B, H, T, .); returns each head's output (B, H, T, v_head_dim). Scores and softmax in float32."""
        cfg = self.cfg
        w_uk, w_uv = self.wkv_b.weight.view(cfg.n_head, -1, cfg.kv_lora_rank).split(
            [cfg.qk_nope_head_dim, cfg.v_head_dim], dim=1)  # (H, d_h, d_c), (H, d_v, d_c)
        B, H, T, _ = q_nope.shape
        # every head attends over the same latents: fold the heads into the rows, (B, H*T, .) @ (B, ., S), so
        # that no per-head copy of the cache is made (a broadcast matmul over heads would expand it)
        q_latent = torch.einsum("bhtd,hdc->bhtc", q_nope.float(), w_uk.float())  # W_UK^T q_nope, per head
        c_kv, k_pe = c_kv[:, 0].float(), k_pe[:, 0].float()  # (B, S, d_c), (B, S, d_h^R)
        scores = (q_latent.reshape(B, H * T, -1) @ c_kv.transpose(1, 2)
                  + q_pe.float().reshape(B, H * T, -1) @ k_pe.transpose(1, 2)).view(B, H, T, -1)
        weights = (scores * self.scale).masked_fill(~mask, float("-inf")).softmax(-1)  # (B, H, T, S)
        latent_out = (weights.view(B, H * T, -1) @ c_kv).view(B, H, T, -1)  # sum_j a_j c_j per head and query
        return torch.einsum("bhtc,hvc->bhtv", latent_out, w_uv.float()).type_as(q_nope)  # W_UV, per head


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w_gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.w_down = nn.Linear(hidden, dim, bias=False)

    prepared = None  # decode_weights() in column-major memory while Transformer.decoding() runs, else None

    def forward(self, x):
        w_gate_up, w_down = self.prepared or self.decode_weights()
        gate, up = F.linear(x, w_gate_up).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, w_down)

    def decode_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The weights forward multiplies by, which Transformer.decoding lays out for decoding."""
        return self.w_gate_up.weight, self.w_down.weight


class MoE(nn.Module):
    """DeepSeekMoE feed-forward with auxiliary-loss-free load balancing (DeepSeek-V3, eqs. 12-16).

    s_i = sigmoid(u . e_i); expert i is chosen if s_i + b_i is among the top k; its gate is
    g_i = s_i / sum_{j chosen} s_j. The bias b only steers the choice and never enters the output, so
    balancing does not distort the gradient. `update_bias` moves b_i by -gamma for overloaded experts and
    +gamma for underloaded ones, from the token counts gathered since the last call.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.top_k = cfg.moe_top_k
        self.gamma = cfg.moe_bias_update
        self.shared = SwiGLU(cfg.n_embd, cfg.moe_hidden * cfg.n_shared_experts) if cfg.n_shared_experts else None
        self.experts = nn.ModuleList(SwiGLU(cfg.n_embd, cfg.moe_hidden) for _ in range(cfg.n_routed_experts))
        self.centroids = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.n_embd))  # e_i
        self.register_buffer("bias", torch.zeros(cfg.n_routed_experts))  # b_i, not trained by gradient
        self.register_buffer("load", torch.zeros(cfg.n_routed_experts), persistent=False)  # tokens routed

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C) -> chosen expert ids (N, k) and their gates (N, k), in float32: the ids in any order, each
        gate in its expert's place, the k gates of a token summing to 1."""
        scores = torch.sigmoid(x.float() @ self.centroids.float().t())
        chosen = torch.topk(scores + self.bias, self.top_k, dim=-1).indices
        gates = scores.gather(-1, chosen)
        return chosen, gates / gates.sum(-1, keepdim=True)

    def forward(self, x, static: bool = False):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        # routing in float32 even under autocast (which would cast its matmul to bf16 whatever .float() the inputs
        # got): in bf16, near-ties among the top k flip between forwards of the same tokens
        with torch.autocast(x.device.type, enabled=False):
            chosen, gates = self.route(x)
        if self.training and torch.is_grad_enabled():  # the tokens of training forwards, not of old log-probs
            self.load += torch.bincount(chosen.flatten(), minlength=len(self.experts)).float()
        # the sum is kept in float32: under bf16 autocast the experts return bf16 and the gates are float32
        out = self.shared(x).float() if self.shared is not None else torch.zeros_like(x, dtype=torch.float32)
        if static:
            # a static decode step: every expert runs on every token, times its gate (0 where not chosen).
            # torch.where below has a data-dependent shape (a host sync, which a CUDA graph cannot hold);
            # this costs n_routed_experts / top_k times the expert FLOPs, little for one token per row.
            # A 0 gate adds exactly 0, in the same expert order, so the sum matches the sparse one.
            weights = gates.new_zeros(x.size(0), len(self.experts)).scatter(1, chosen, gates)  # g_i or 0
            for i, expert in enumerate(self.experts):
                out = out + (expert(x) * weights[:, i, None]).float()
            return out.type_as(x).view(shape)
        for i, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == i)
            # an expert that got no token still runs (on zero rows): its weights then take part in the
            # graph with a zero gradient, which DDP needs (it waits for a gradient of every parameter)
            out = out.index_add(0, token, (expert(x[token]) * gates[token, slot, None]).float())
        return out.type_as(x).view(shape)

    @torch.no_grad()
    def update_bias(self) -> torch.Tensor:
        """Nudge the routing bias towards balance: b_i += gamma * sign(mean load - load_i), so an expert at
        exactly the mean load keeps its bias. Under torch.distributed the load is summed over all ranks
        first, so every replica moves its bias the same way. Returns the load used, as the fraction of
        tokens per expert (all zeros if none was counted), and resets the counts to zero."""
        load = self.load.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(load)  # every rank must move the bias the same way
        self.bias += self.gamma * torch.sign(load.mean() - load)  # b_i += gamma * sign(mean load - load_i)
        self.load.zero_()
        return load / load.sum().clamp(min=1)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = LatentAttention(cfg) if cfg.attn == "mla" else Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        use_moe = cfg.n_routed_experts > 0 and layer >= cfg.first_dense_layers
        self.ffn = MoE(cfg) if use_moe else SwiGLU(cfg.n_embd, cfg.ffn_hidden)

    def forward(self, x, cos, sin, cache=None, layer=0, mask=None, slots=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer, mask, slots)
        if isinstance(self.ffn, MoE):  # a static decode step (slots given) routes without data-dependent shapes
            return x + self.ffn(self.ffn_norm(x), static=slots is not None)
        return x + self.ffn(self.ffn_norm(x))


class MTPModule(nn.Module):
    """One multi-token-prediction depth (DeepSeek-V3 §2.2, eq. 21-22): h'_i = M [RMSNorm(h_i^{k-1});
    RMSNorm(Emb(t_{i+k}))], then one transformer block. The embedding and the output head are the main
    model's; the final norm before the head is the module's own."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.h_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.emb_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.proj = nn.Linear(2 * cfg.n_embd, cfg.n_embd, bias=False)  # M_k
        self.block = Block(cfg, layer)
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)

    def forward(self, h, next_emb, cos, sin, cache=None, layer=0, mask=None, slots=None):
        x = self.proj(torch.cat([self.h_norm(h), self.emb_norm(next_emb)], dim=-1))
        return self.block(x, cos, sin, cache, layer, mask, slots)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = rope_tables(cfg.rope_dim, cfg.block_size, cfg.rope_theta, cfg.rope_scaling)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # activation checkpointing: keep only each block's input in training forwards and recompute the rest
        # in backward (about a third more compute for a fraction of the activation memory); off by default
        self.checkpoint_blocks = False
        self._init(self)
        # the MTP modules come after the main weights' initialisation, which they leave as without them
        self.mtp = nn.ModuleList(MTPModule(cfg, cfg.n_layer + k) for k in range(cfg.mtp_depth))  # empty: no MTP
        self._init(self.mtp)

    def _init(self, module: nn.Module):
        module.apply(self._init_weights)
        for name, p in module.named_parameters():
            # GPT-2's scaled init: each residual branch adds to the stream, so shrink its output projection
            if name.endswith("wo.weight") or name.endswith("w_down.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * self.cfg.n_layer))
            elif name.endswith("centroids"):
                nn.init.normal_(p, std=0.02)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def num_params(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok_emb.weight.numel() if exclude_embeddings else n

    def moe_layers(self) -> list[MoE]:
        return [b.ffn for b in [*self.blocks, *(m.block for m in self.mtp)] if isinstance(b.ffn, MoE)]

    def hidden(self, idx: torch.Tensor, positions: torch.Tensor | None = None, *,
               cache: KVCache | None = None, slots: torch.Tensor | None = None) -> torch.Tensor:
        """Final-normed hidden states (B, T, C): everything forward does before lm_head (cache, positions and
        slots as in forward). A reward model puts its scalar head here instead of the vocabulary head."""
        return self.norm(self.trunk(idx, positions, cache=cache, slots=slots))

    def trunk(self, idx: torch.Tensor, positions: torch.Tensor | None = None, *,
              cache: KVCache | None = None, slots: torch.Tensor | None = None) -> torch.Tensor:
        """The residual stream after the last block, before the final norm (B, T, C): what the MTP modules
        start from."""
        B, T = idx.shape
        if positions is None:
            if T > self.cfg.block_size:
                raise ValueError(f"sequence of {T} tokens exceeds block_size {self.cfg.block_size}")
            positions = torch.arange(T, device=idx.device).expand(B, T)
        # positions beyond the RoPE table: checked on the host only off CUDA and outside a compiled graph,
        # where it costs no sync (on CUDA, .max() would stall every decode step; generate keeps positions
        # < block_size itself)
        elif (positions.device.type != "cuda" and not torch.compiler.is_compiling()
              and positions.max() >= self.cfg.block_size):
            raise ValueError(f"position {int(positions.max())} exceeds block_size {self.cfg.block_size}")
        cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        mask = None if cache is None else self.cache_mask(cache, T, slots)
        x = self.tok_emb(idx)
        for i, block in enumerate(self.blocks):
            if self.checkpoint_blocks and self.training and torch.is_grad_enabled() and cache is None:
                # the recomputation counts an MoE layer's routed tokens twice: every expert's load doubles,
                # which leaves the balancing bias's update (the sign of mean load - load) unchanged
                x = torch.utils.checkpoint.checkpoint(block, x, cos, sin, use_reentrant=False)
            else:
                x = block(x, cos, sin, cache, i, mask, slots)
        if cache is not None and slots is None:
            cache.length += T
        return x

    @staticmethod
    def cache_mask(cache: KVCache, T: int, slots: torch.Tensor | None) -> torch.Tensor:
        """Which cache slots each of T new tokens may attend to, (B, 1, T, n_keys)."""
        device = cache.valid.device
        if slots is None:  # dynamic: the new tokens fill the next T slots and see the slots filled so far
            start = cache.length
            if start + T > cache.max_len:
                raise ValueError(f"KV cache of {cache.max_len} slots is full")
            query, n_keys = start + torch.arange(T, device=device), start + T
        else:  # static: the new tokens go to `slots` and see the whole cache, masked
            query, n_keys = slots, cache.max_len
        # slot j is visible from new token t if it is a real token and j <= query slot of t. Every token
        # also sees itself, so a padding row is never fully masked (that would give NaN, and NaN * 0 = NaN).
        key = torch.arange(n_keys, device=device)
        query = query[:, None]
        mask = (key <= query) & cache.valid[:, None, :n_keys] | (key == query)
        return mask[:, None]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *, cache: KVCache | None = None,
                positions: torch.Tensor | None = None, slots: torch.Tensor | None = None, mtp_weight: float = 0.0):
        """idx: (B, T) token ids.

        Training: logits (B, T, V) and, with targets, the mean cross-entropy (targets -1 are ignored); with
        mtp_weight (lambda) > 0 the loss adds lambda times the mean of the MTP modules' losses (V3 eq. 25).
        Decoding: pass a KVCache and the absolute `positions` (B, T) of the new tokens; the new tokens
        attend to every valid cached slot and causally among themselves. With `slots` (T,), a tensor of the
        cache slots to write, the step has static shapes (see KVCache) and can be captured as a CUDA graph.
        """
        h = self.trunk(idx, positions, cache=cache, slots=slots)
        logits = self.head(self.norm(h))
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        if mtp_weight:
            loss = loss + mtp_weight * torch.stack(self.mtp_losses(h, targets)).mean()  # lambda / D * sum_k L_k
        return logits, loss

    def mtp_losses(self, h: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        """The cross-entropy L_k of each MTP depth k = 1..D (DeepSeek-V3 eqs. 21-24), from the trunk's output h
        (B, T, C) and the targets (B, T), targets[:, i] = t_{i+1}. Depth k at position i combines h^{k-1}_i
        with the embedding of t_{i+k} and predicts t_{i+k+1}: its sequence is k tokens shorter."""
        if not len(self.mtp):
            raise ValueError("this model has no MTP modules: build it with mtp_depth >= 1")
        T, losses = h.size(1), []
        for k, module in enumerate(self.mtp, start=1):
            n = T - k  # positions i whose t_{i+k} and t_{i+k+1} are both in the window
            if n <= 0:
                raise ValueError(f"MTP depth {k} needs sequences of more than {k} tokens, got {T}")
            nxt, labels = targets[:, k - 1:k - 1 + n], targets[:, k:k + n]  # t_{i+k}, t_{i+k+1}
            labels = labels.masked_fill(nxt < 0, -1)  # no input token, no prediction
            h = module(h[:, :n], self.tok_emb(nxt.clamp(min=0)), self.rope_cos[:n], self.rope_sin[:n])
            logits = self.head(module.norm(h))
            losses.append(F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-1))
        return losses

    def mtp_draft(self, h: torch.Tensor, next_tokens: torch.Tensor, positions: torch.Tensor,
                  cache: KVCache) -> torch.Tensor:
        """Logits (B, T, V) of the first MTP module for the tokens two ahead, at the T positions the model's
        last cached forward wrote: at each position i, from the trunk's h_i (B, T, C) and the token after it,
        t_{i+1} (B, T). Its keys and values go to the cache's layer n_layer, in the same slots."""
        T = h.size(1)
        cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        cache.length -= T  # back to the slots the model's forward just filled
        mask = self.cache_mask(cache, T, None)
        out = self.mtp[0](h, self.tok_emb(next_tokens), cos, sin, cache, self.cfg.n_layer, mask)
        cache.length += T
        return self.head(self.mtp[0].norm(out))

    @contextlib.contextmanager
    def decoding(self):
        """Within this block, the matmuls of decoding (Attention.decode, the SwiGLUs) run on copies of their
        weights prepared once: wq and wkv stacked, and every matrix in column-major memory (the same values:
        F.linear then reads a contiguous W^T, which the CPU's BLAS multiplies 10-15% faster at a decode
        step's sizes, 64 rows by 128-704 columns). sampling.generate wraps one call in it on the CPU, where
        the weights cannot change meanwhile; it holds a second copy of the blocks' weights until the block
        ends."""
        layers = [m for m in self.modules() if isinstance(m, (Attention, SwiGLU))]
        for m in layers:
            m.prepared = tuple(w if w is None or w.dim() < 2 else w.t().contiguous().t() for w in m.decode_weights())
        try:
            yield
        finally:
            for m in layers:
                m.prepared = None

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The vocabulary head, in float32 even under bf16 autocast: bf16 logits round log-probs by up to
        ~1e-2, and GRPO's ratio exp(logp - old_logp) must be exactly 1 on-policy, whichever forward
        (eager, compiled, DDP) computed each side.

        The vocabulary is not padded to a multiple of 64 (nanoGPT's 50257 -> 50304): the weights keep the
        tokenizer's shape, which Hugging Face export needs, and the sizes met here already align (2056 = 8 x
        257 at the gpu preset; Qwen's 151936 and Llama 3's 128256 are multiples of 64): padding would save
        a tile's rounding of a matmul that is ~3% of the FLOPs."""
        with torch.autocast(h.device.type, enabled=False):
            return F.linear(h.float(), self.lm_head.weight.float())

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per (active) weight plus attention (PaLM appendix B)."""
        cfg = self.cfg
        n = self.num_params(exclude_embeddings=True)
        for moe in self.moe_layers():  # only top_k of the routed experts run for each token
            per_expert = sum(p.numel() for p in moe.experts[0].parameters())
            n -= per_expert * (len(moe.experts) - moe.top_k)
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
