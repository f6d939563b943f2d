"""Hugging Face checkpoints in and out of our own Transformer: Llama 3.x, Qwen2 / Qwen2.5 and Qwen3.

`load_pretrained(path)` reads a local checkpoint directory (config.json, model.safetensors or shards named
by model.safetensors.index.json, tokenizer.json, tokenizer_config.json) into `r1mini.model.Transformer` and
our tiktoken-served `Tokenizer`; `save_pretrained(model, tokenizer, path)` writes one back that `transformers`
loads, with the chat template (ours: formats.CHAT_TEMPLATE, our chat format in Jinja) and the stop tokens in
generation_config.json, so that any client renders and ends a chat turn as our scripts do. The three families
are one architecture with a few switches (ModelConfig's attn_bias for Qwen2's q/k/v biases, qk_norm and
attn_head_dim for Qwen3, rope_scaling for Llama 3.1+). Weights go through `safetensors` only: `transformers` is
never imported here, so loading and training need none of it.

Our layout differs in two places, both fused matrices: wkv holds k_proj's rows then v_proj's, and w_gate_up
holds gate_proj's rows then up_proj's.

Its command line, `python -m r1mini.export out/zero out/zero-hf`, writes any of our checkpoints in Hugging Face
form (r1mini/export.py).
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from r1mini.config import UserError
from r1mini.model import ModelConfig, Transformer
from r1mini.tokenizer import Tokenizer

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}


# -- config.json <-> ModelConfig ------------------------------------------------------------------------------

def model_config_from_hf(hf: dict, where: str = "config.json") -> ModelConfig:
    """Our ModelConfig for a Hugging Face config.json; a feature we have no faithful equivalent of is refused."""
    arch = (hf.get("architectures") or ["?"])[0]
    if arch not in ARCHITECTURES:
        raise ValueError(f"{where}: architecture {arch} is not supported; r1mini loads {', '.join(ARCHITECTURES)}")
    family = ARCHITECTURES[arch]
    refuse = {"hidden_act other than silu": hf.get("hidden_act", "silu") != "silu",
              "mlp_bias": hf.get("mlp_bias", False),
              "attention_bias on the output projection": family != "qwen2" and hf.get("attention_bias", False),
              "sliding-window attention": hf.get("use_sliding_window", False)}
    if any(refuse.values()):
        raise ValueError(f"{where}: {', '.join(k for k, v in refuse.items() if v)} is not supported")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = None
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")}
    n_embd, n_head = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or n_embd // n_head
    return ModelConfig(
        vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 4096),
        n_layer=hf["num_hidden_layers"], n_head=n_head, n_kv_head=hf.get("num_key_value_heads") or n_head,
        n_embd=n_embd, ffn_hidden=hf["intermediate_size"], rope_theta=float(theta), norm_eps=hf["rms_norm_eps"],
        tie_embeddings=hf.get("tie_word_embeddings", False), attn_bias=family == "qwen2",
        qk_norm=family == "qwen3", attn_head_dim=0 if head_dim * n_head == n_embd else head_dim,
        rope_scaling=scaling)


def hf_config(cfg: ModelConfig, tokenizer: Tokenizer | None = None) -> dict:
    """config.json for our ModelConfig: Qwen3 when it has q/k norms, Qwen2 when it has q/k/v biases, else Llama."""
    if cfg.n_routed_experts:
        raise ValueError("a DeepSeekMoE model has no Llama/Qwen equivalent (routed experts, sigmoid gates, the "
                         "balancing bias): only dense models (n_routed_experts 0) can be exported")
    if cfg.qk_norm and cfg.attn_bias:
        raise ValueError("q/k/v biases together with q/k norms match no supported family (Qwen2 has the first, "
                         "Qwen3 the second)")
    extra = {}
    arch = "Qwen3ForCausalLM" if cfg.qk_norm else "Qwen2ForCausalLM" if cfg.attn_bias else "LlamaForCausalLM"
    rope = {"rope_type": "default", **(cfg.rope_scaling or {}), "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling:  # where transformers before 5 looks for it (5 reads rope_parameters)
        extra["rope_scaling"] = cfg.rope_scaling
    if tokenizer is not None:
        extra["eos_token_id"] = tokenizer.eot_id
        if tokenizer.hf and tokenizer.hf.get("bos_token"):
            extra["bos_token_id"] = tokenizer.special(tokenizer.hf["bos_token"])
    return {"architectures": [arch], "model_type": ARCHITECTURES[arch], "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.block_size, "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.head_dim,
            "intermediate_size": cfg.ffn_hidden, "hidden_act": "silu", "rms_norm_eps": cfg.norm_eps,
            "rope_theta": cfg.rope_theta, "rope_parameters": rope, "tie_word_embeddings": cfg.tie_embeddings,
            "attention_bias": False, "dtype": "float32", **extra}


# -- weights: their names <-> ours -------------------------------------------------------------------------

def _layer_names(i: int, cfg: ModelConfig) -> dict[str, list[str]]:
    """Our parameter name -> the Hugging Face names whose rows it holds, concatenated in this order."""
    ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
    names = {"attn_norm.weight": ["input_layernorm.weight"], "ffn_norm.weight": ["post_attention_layernorm.weight"],
             "attn.wq.weight": ["self_attn.q_proj.weight"],
             "attn.wkv.weight": ["self_attn.k_proj.weight", "self_attn.v_proj.weight"],
             "attn.wo.weight": ["self_attn.o_proj.weight"],
             "ffn.w_gate_up.weight": ["mlp.gate_proj.weight", "mlp.up_proj.weight"],
             "ffn.w_down.weight": ["mlp.down_proj.weight"]}
    if cfg.attn_bias:
        names |= {"attn.wq.bias": ["self_attn.q_proj.bias"],
                  "attn.wkv.bias": ["self_attn.k_proj.bias", "self_attn.v_proj.bias"]}
    if cfg.qk_norm:
        names |= {"attn.q_norm.weight": ["self_attn.q_norm.weight"], "attn.k_norm.weight": ["self_attn.k_norm.weight"]}
    return {ours + k: [theirs + n for n in v] for k, v in names.items()}


def name_map(cfg: ModelConfig) -> dict[str, list[str]]:
    """Every parameter of ours -> the Hugging Face tensors it is made of."""
    names = {"tok_emb.weight": ["model.embed_tokens.weight"], "norm.weight": ["model.norm.weight"]}
    if not cfg.tie_embeddings:
        names["lm_head.weight"] = ["lm_head.weight"]
    for i in range(cfg.n_layer):
        names |= _layer_names(i, cfg)
    return names


def to_ours(tensors: dict[str, torch.Tensor], cfg: ModelConfig, where: str = "the checkpoint") -> dict:
    """A Hugging Face state dict -> ours (a tied checkpoint's lm_head.weight, if saved, is the embedding)."""
    names = name_map(cfg)
    missing = sorted(n for parts in names.values() for n in parts if n not in tensors)
    if missing:
        raise ValueError(f"{where} lacks {len(missing)} tensors its config.json implies, e.g. {missing[:3]}")
    used = {n for parts in names.values() for n in parts} | {"lm_head.weight"}
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(f"{where} holds tensors r1mini has no place for, e.g. {unused[:3]}")
    state = {ours: torch.cat([tensors[n] for n in parts]) for ours, parts in names.items()}
    if cfg.tie_embeddings:  # one tensor under both names, as Transformer's state dict has it
        state["lm_head.weight"] = state["tok_emb.weight"]
    return state


def to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> Hugging Face's: the fused matrices split back into equal row blocks."""
    out = {}
    for ours, parts in name_map(cfg).items():
        for name, block in zip(parts, state[ours].chunk(len(parts))):
            out[name] = block.contiguous()
    return out


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, or every shard that model.safetensors.index.json names."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors |= load_file(path / shard)
        return tensors
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path}: download the "
                                f"checkpoint's safetensors files (pytorch_model.bin is not read)")
    return load_file(path / "model.safetensors")


def load_pretrained(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                    block_size: int | None = None) -> tuple[Transformer, Tokenizer]:
    """(model, tokenizer) of a local Hugging Face checkpoint directory. dtype None: float32, which our training
    keeps its weights in (bf16 autocast does the compute); torch.bfloat16 halves the memory for inference.
    block_size: the longest sequence to allow, at most the checkpoint's max_position_embeddings (the default)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no config.json in {path}: pass a Hugging Face checkpoint directory (e.g. one "
                                f"`huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --local-dir DIR` made)")
    config_file = path / "config.json"
    cfg = model_config_from_hf(json.loads(config_file.read_text(encoding="utf-8")), str(config_file))
    if block_size is not None:
        cfg.block_size = min(cfg.block_size, block_size)
    model = Transformer(cfg)
    model.load_state_dict(to_ours(read_weights(path), cfg, str(path)))
    tokenizer = tokenizer_from_hf(path)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens, the model only {cfg.vocab_size}")
    for p in model.parameters():  # the parameters only: the RoPE tables stay float32 at any dtype
        p.data = p.data.to(dtype or torch.float32)
    return model.to(device), tokenizer


def save_pretrained(model: Transformer, tokenizer: Tokenizer, path: str | Path, max_shard_bytes: int = 0) -> None:
    """Write a Hugging Face checkpoint directory (weights in float32 as the model holds them): config.json,
    generation_config.json, model.safetensors (or shards of at most max_shard_bytes plus their index),
    tokenizer.json and tokenizer_config.json with the chat template."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = hf_config(model.cfg, tokenizer)
    tensors = {k: v.detach().cpu() for k, v in to_hf(model.state_dict(), model.cfg).items()}
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    # a reply ends at any stop token (ours: <|end|> closes a chat turn, <|endoftext|> a text), which a client's
    # generate() reads from here; config.json's eos_token_id is the one end-of-text token
    stops = tokenizer.hf["stop_tokens"] if tokenizer.hf else ["<|end|>", "<|endoftext|>"]
    generation = {"eos_token_id": [tokenizer.special(t) for t in stops], "pad_token_id": tokenizer.eot_id}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    write_weights(tensors, path, max_shard_bytes)
    write_hf_tokenizer(tokenizer, path)


def write_weights(tensors: dict[str, torch.Tensor], path: Path, max_shard_bytes: int = 0) -> None:
    """One model.safetensors, or (max_shard_bytes > 0) shards filled in order up to that size and the index."""
    if not max_shard_bytes:
        save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
        return
    shards: list[dict] = [{}]
    filled = 0  # bytes in the last shard
    for name, t in tensors.items():
        size = t.numel() * t.element_size()
        if shards[-1] and filled + size > max_shard_bytes:
            shards.append({})
            filled = 0
        shards[-1][name] = t
        filled += size
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, path / file, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(shard, file)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


# -- tokenizer.json <-> our tiktoken-served Tokenizer --------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as a printable character (printable Latin-1 bytes stand for
    themselves, the others are moved to code points from 256 on), so that a BPE vocabulary is plain text."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(moved)}}


# GPT-2's pre-tokenizer pattern: what a ByteLevel pre-tokenizer with use_regex splits on
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _pre_tokenizer_pattern(pre: dict | None, where: str) -> str:
    """The split pattern of a byte-level pre-tokenizer: Split(Regex) then ByteLevel (Llama 3, Qwen), or a
    ByteLevel that splits itself with GPT-2's pattern."""
    steps = (pre.get("pretokenizers") or [pre]) if pre else []
    kinds = [s["type"] for s in steps]
    if "ByteLevel" not in kinds or any(s.get("add_prefix_space") for s in steps):
        raise ValueError(f"{where}: the pre-tokenizer {kinds} is not byte-level BPE as Llama 3 and Qwen use")
    splits = [s for s in steps if s["type"] == "Split"]
    byte_level = next(s for s in steps if s["type"] == "ByteLevel")
    if len(splits) == 1 and not byte_level.get("use_regex", True) and "Regex" in splits[0]["pattern"] \
            and splits[0].get("behavior") == "Isolated" and not splits[0].get("invert"):
        return splits[0]["pattern"]["Regex"]
    if not splits and byte_level.get("use_regex", True):
        return GPT2_PATTERN
    raise ValueError(f"{where}: the pre-tokenizer {kinds} splits text in a way r1mini does not reproduce")


def _normalization(norm: dict | None, where: str) -> str | None:
    if norm is None:
        return None
    if norm["type"] in ("NFC", "NFD", "NFKC", "NFKD"):
        return norm["type"]
    raise ValueError(f"{where}: normalizer {norm['type']} is not supported (None or a Unicode normal form)")


def tokenizer_from_hf(path: str | Path) -> Tokenizer:
    """Our Tokenizer for a checkpoint's tokenizer.json (byte-level BPE) and tokenizer_config.json.

    tiktoken's BPE merges, within each pre-token, the adjacent pair whose joined bytes have the lowest rank;
    with the vocabulary ids as ranks (BPE trainers number tokens in merge order) that is the merge order of
    tokenizer.json. The added tokens become tiktoken's special tokens, matched in text with allow_special."""
    path = Path(path)
    file = path / "tokenizer.json"
    if not file.exists():
        raise FileNotFoundError(f"no tokenizer.json in {path}: r1mini reads fast (byte-level BPE) tokenizers only")
    spec = json.loads(file.read_text(encoding="utf-8"))
    if spec["model"]["type"] != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise ValueError(f"{file}: not a byte-level BPE tokenizer (model {spec['model']['type']})")
    config_file = path / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    template_file = path / "chat_template.jinja"  # where newer transformers versions keep the template
    template = template_file.read_text(encoding="utf-8") if template_file.exists() else config.get("chat_template")
    if isinstance(template, list):  # several named templates: the default one
        template = next((t["template"] for t in template if t["name"] == "default"), None)

    special = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    for t in spec.get("added_tokens", []):
        if t.get("lstrip") or t.get("rstrip") or t.get("single_word"):
            raise ValueError(f"{file}: added token {t['content']!r} strips whitespace, which r1mini does not do")
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {}
    for token, i in spec["model"]["vocab"].items():
        if token in special:  # a trainer's special tokens also sit in the vocabulary: they are matched whole
            continue
        try:
            ranks[bytes(to_byte[c] for c in token)] = i
        except KeyError:
            raise ValueError(f"{file}: vocabulary entry {token!r} is not byte-level text") from None
    if any(bytes([b]) not in ranks for b in range(256)):
        raise ValueError(f"{file}: the vocabulary lacks some of the 256 single bytes, which byte-level BPE needs")

    def token_name(key: str) -> str | None:
        value = config.get(key)
        return value.get("content") if isinstance(value, dict) else value

    eos, bos = token_name("eos_token") or next(iter(special), None), token_name("bos_token")
    if eos not in special or (bos and bos not in special):
        raise ValueError(f"{path}: the eos_token ({eos}) and bos_token ({bos}) of tokenizer_config.json must be "
                         f"among tokenizer.json's added tokens")
    ends = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>", "<|end_of_text|>", "<|end|>")  # ours, Phi-3's
    hf = {"normalization": _normalization(spec.get("normalizer"), str(file)), "chat_template": template,
          "bos_token": bos, "eos_token": eos, "stop_tokens": [eos] + [t for t in ends if t in special and t != eos],
          "added_tokens": [t["content"] for t in spec.get("added_tokens", []) if not t.get("special", True)]}
    return Tokenizer(ranks, name=path.name, pattern=_pre_tokenizer_pattern(spec.get("pre_tokenizer"), str(file)),
                     special_tokens=special, hf=hf)


def merges_of(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The BPE merges behind tiktoken ranks, in rank order: each token of two or more bytes is the pair that
    BPE with only the lower ranks leaves of its bytes."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            pairs = [(ranks.get(a + b, rank), j) for j, (a, b) in enumerate(zip(parts, parts[1:]))]
            best, j = min(pairs)
            if best >= rank:
                break
            parts[j:j + 2] = [parts[j] + parts[j + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) is not one merge of two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges


def write_hf_tokenizer(tokenizer: Tokenizer, path: Path) -> None:
    """tokenizer.json (byte-level BPE, our split pattern, the special tokens as added tokens) and
    tokenizer_config.json, which `tokenizers` and `transformers` read."""
    text = bytes_to_unicode()
    as_text = lambda b: "".join(text[x] for x in b)
    hf = tokenizer.hf or {}
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": s not in hf.get("added_tokens", [])}
                         for s, i in tokenizer.special_tokens.items()],
        "normalizer": {"type": hf["normalization"]} if hf.get("normalization") else None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": tokenizer.pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": {as_text(b): r for b, r in tokenizer.ranks.items()},
                  "merges": [[as_text(a), as_text(b)] for a, b in merges_of(tokenizer.ranks)]},
    }
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": hf.get("eos_token", "<|endoftext|>"),
              "bos_token": hf.get("bos_token"), "chat_template": tokenizer.chat_template,  # ours: formats.CHAT_TEMPLATE
              "model_max_length": 1 << 30}
    (path / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False) + "\n", encoding="utf-8")
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")


# -- chat templates --------------------------------------------------------------------------------------------

def render_chat(tokenizer: Tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    """The checkpoint's own chat template rendered as transformers renders it (Jinja in a sandbox, blocks
    trimmed). jinja2 is an optional dependency: `pip install 'r1mini[hf]'`."""
    try:
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise UserError("rendering the checkpoint's chat template needs jinja2: pip install 'r1mini[hf]' "
                        "(or pip install jinja2)") from None

    def raise_exception(message):
        raise ValueError(f"the chat template refused the conversation: {message}")

    class Generation(jinja2.ext.Extension):
        """{% generation %}...{% endgeneration %}, with which a template marks the assistant's trained tokens for
        transformers: the text inside is rendered as it stands (template_chat_ids masks the reply itself)."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body).set_lineno(lineno)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, Generation])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)  # Llama 3.2's system date
    hf = tokenizer.hf or {}
    return env.from_string(tokenizer.chat_template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=hf.get("bos_token") or "",
        eos_token=hf.get("eos_token") or "")


def template_chat_ids(tokenizer: Tokenizer, user: str, assistant: str | None = None) -> tuple[list[int], list[bool]]:
    """formats.chat_ids through the checkpoint's template: the prompt up to the assistant's turn, and the reply
    (the full conversation's text past that prompt, its end-of-turn tokens included) with the loss mask on."""
    prompt = render_chat(tokenizer, [{"role": "user", "content": user}], add_generation_prompt=True)
    ids = tokenizer.encode(prompt, allow_special=True)
    if assistant is None:
        return ids, [False] * len(ids)
    full = render_chat(tokenizer, [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
                       add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently once a reply follows it, so the reply "
                         "cannot be cut off the end; pass a template whose generation prompt is a prefix")
    reply = tokenizer.encode(full[len(prompt):], allow_special=True)
    return ids + reply, [False] * len(ids) + [True] * len(reply)

