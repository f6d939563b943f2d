"""r1mini/hf.py against transformers and tokenizers themselves: tiny random Llama 3 / Qwen2 / Qwen3 checkpoints
and byte-level BPE tokenizers made here (nothing is downloaded), read by our code and compared logit by logit and
token by token; and one of our own models, pretrained here and exported, driven by transformers alone (its chat
template against formats.chat_ids, its greedy generation against ours) and brought back through hf: into R1-Zero,
which must raise its dev pass@1. Skipped when transformers or tokenizers is absent (`pip install -e '.[test]'` has
both)."""
import contextlib
import copy
import json
import random
import unicodedata

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from r1mini.hf import load_pretrained, merges_of, save_pretrained, tokenizer_from_hf  # noqa: E402
from r1mini.model import Transformer, model_config  # noqa: E402
from r1mini.sampling import generate  # noqa: E402
from r1mini.tokenizer import Tokenizer  # noqa: E402

# the pre-tokenizer patterns of Qwen2 (every digit alone) and Llama 3 (digits in threes)
QWEN_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
LLAMA3_PATTERN = QWEN_PATTERN.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5's template, shortened to what a one-turn conversation uses
QWEN_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                 "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                 "{% endif %}")
PIECES = ["the", " answer", " is", " 42", "计算", "加", "等于", "数学", " Zahl", " café", "ñ", " 😀", "🚀", "\n", "  ",
          "\t", " 1234567", ", ", ". ", "?", "'s", "'LL", " x=3*y", "def f(x):\n    return x", " ½", "e\u0301"]


def corpus(n=1500, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def train_hf_tokenizer(pattern: str, nfc: bool, vocab_size: int = 500):
    """tokenizers' own byte-level BPE trainer, with Qwen's or Llama 3's pre-tokenizer; specials after the BPE."""
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
    tok = tokenizers.Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    tok.add_special_tokens(SPECIALS)
    tok.add_tokens(["<think>", "</think>"])  # added but not special, as in Qwen3: matched in any text
    return tok


def write_tokenizer(tok, path, template=QWEN_TEMPLATE, bos=None):
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "bos_token": bos, "chat_template": template}
    (path / "tokenizer_config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return train_hf_tokenizer(QWEN_PATTERN, nfc=True)


def random_strings(n, seed):
    """ASCII, digits, Chinese, emoji, combining accents, whitespace runs and special tokens, mixed."""
    rng = random.Random(seed)
    pools = ["abcXYZ'sll", "0123456789", "计算加等于数学中文", "😀🚀👍🏽", "e\u0301\u0301ñ½", " \t\n\r", "!?.,;:-=*()[]{}<>|"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, 8)):
            if rng.random() < 0.1:
                parts.append(rng.choice(SPECIALS))
            else:
                parts.append("".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 6))))
        out.append("".join(parts))
    return out


@pytest.mark.parametrize("pattern,nfc", [(QWEN_PATTERN, True), (LLAMA3_PATTERN, False)], ids=["qwen", "llama3"])
def test_tokenizer_encodes_as_tokenizers_does(tmp_path, pattern, nfc):
    hf = train_hf_tokenizer(pattern, nfc)
    write_tokenizer(hf, tmp_path)
    ours = tokenizer_from_hf(tmp_path)
    texts = random_strings(1200, seed=len(pattern))
    agree = sum(ours.encode(t, allow_special=True) == hf.encode(t, add_special_tokens=False).ids for t in texts)
    assert agree == len(texts)
    hf.encode_special_tokens = True  # special tokens as text, the added <think> still one token: our plain encode
    texts = [t.replace("<|im_end|>", "<think>", 1) for t in texts]
    assert sum(t.count("<think>") for t in texts) > 100
    assert [ours.encode(t) for t in texts] == [hf.encode(t, add_special_tokens=False).ids for t in texts]
    assert ours.encode_batch(texts[:50]) == [ours.encode(t) for t in texts[:50]]
    for t in texts:  # round trip (Qwen's tokenizer normalises to NFC first)
        assert ours.decode(ours.encode(t, allow_special=True)) == (unicodedata.normalize("NFC", t) if nfc else t)
    # without allow_special a special token written in text stays text
    assert ours.encode("<|im_end|>") != [ours.special("<|im_end|>")]
    assert ours.eot_id == hf.token_to_id("<|im_end|>")


def test_chat_template_renders_and_masks_the_reply(tmp_path, qwen_tokenizer):
    from r1mini.formats import chat_ids, stop_ids
    write_tokenizer(qwen_tokenizer, tmp_path)
    tok = tokenizer_from_hf(tmp_path)
    ids, mask = chat_ids(tok, "2+2?", "<think> 4 </think> <answer> 4 </answer>")
    text = ("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think> 4 </think> <answer> 4 </answer>"
            "<|im_end|>\n")
    assert ids == qwen_tokenizer.encode(text, add_special_tokens=False).ids
    n_prompt = len(qwen_tokenizer.encode("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n").ids)
    assert mask == [False] * n_prompt + [True] * (len(ids) - n_prompt)
    assert stop_ids(tok, chat=True)[0] == tok.special("<|im_end|>")


def test_zero_prompt_starts_with_the_checkpoints_bos(tmp_path, qwen_tokenizer):
    """Llama 3 has a begin-of-text token and was trained to see it first; Qwen has none."""
    from r1mini.formats import prompt_ids, zero_prompt
    write_tokenizer(qwen_tokenizer, tmp_path / "qwen")
    write_tokenizer(qwen_tokenizer, tmp_path / "llama", bos="<|endoftext|>")
    qwen, llama = tokenizer_from_hf(tmp_path / "qwen"), tokenizer_from_hf(tmp_path / "llama")
    text = qwen.encode(zero_prompt("2+2?"))
    assert prompt_ids(qwen, "2+2?", chat=False)[0] == text
    assert prompt_ids(llama, "2+2?", chat=False)[0] == [qwen_tokenizer.token_to_id("<|endoftext|>")] + text
    write_tokenizer(qwen_tokenizer, tmp_path / "bad", bos="<s>")
    with pytest.raises(ValueError, match="must be among tokenizer.json's added tokens"):
        tokenizer_from_hf(tmp_path / "bad")


# -- models ------------------------------------------------------------------------------------------------------

def hf_model(family: str, vocab_size: int, seed: int = 0):
    """A tiny random model of the family; every parameter (norms and biases too) drawn at random, big enough
    that logits differ by O(1), so a wrong mapping cannot hide."""
    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)
    if family == "llama3":  # RoPE scaling past an "original" length of 32 positions: all three bands in use
        config = transformers.LlamaConfig(**common, tie_word_embeddings=False, rope_scaling=dict(
            rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=32))
    elif family == "qwen2":
        config = transformers.Qwen2Config(**common, tie_word_embeddings=True)
    else:  # head_dim 32, apart from hidden_size / heads = 16
        config = transformers.Qwen3Config(**common, head_dim=32, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0, 0.2) if "norm" in name else p.normal_(0.0, 0.5 if name.endswith("bias") else 0.1)
    return model


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, qwen_tokenizer):
    """family -> (transformers model, its save_pretrained directory with our test tokenizer beside it)."""
    out = {}
    for family in ("llama3", "qwen2", "qwen3"):
        path = tmp_path_factory.mktemp(family)
        model = hf_model(family, qwen_tokenizer.get_vocab_size() + 5)  # unused rows past the tokens, as Qwen's
        model.save_pretrained(path)
        write_tokenizer(qwen_tokenizer, path)
        out[family] = model, path
    return out


@pytest.mark.parametrize("family", ["llama3", "qwen2", "qwen3"])
def test_logits_and_greedy_tokens_equal_transformers(family, family_dirs):
    theirs, path = family_dirs[family]
    ours, _ = load_pretrained(path)
    ours.eval()
    idx = torch.randint(0, theirs.config.vocab_size, (2, 120), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(idx).logits
        got = ours(idx)
    assert expected.std() > 0.3  # logits far from 0: equality below is a real check
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    prompt = idx[0, :40]
    want = theirs.generate(prompt[None], max_new_tokens=30, do_sample=False, eos_token_id=None, pad_token_id=0)
    got = generate(ours, [prompt.tolist()], 30, temperature=0.0)
    assert got[0] == want[0, 40:].tolist()


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_sharded_and_bf16_checkpoints_load(family, tmp_path, qwen_tokenizer):
    theirs = hf_model(family, qwen_tokenizer.get_vocab_size())
    with torch.no_grad():  # float32 weights that bf16 holds exactly: the reference for the bf16 file
        for p in theirs.parameters():
            p.copy_(p.bfloat16())
    copy.deepcopy(theirs).to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="40KB")
    write_tokenizer(qwen_tokenizer, tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) > 2 and (tmp_path / "model.safetensors.index.json").exists()
    ours, _ = load_pretrained(tmp_path)
    assert ours.lm_head.weight.dtype == torch.float32
    idx = torch.arange(100)[None] % theirs.config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(idx), theirs(idx).logits, atol=1e-4, rtol=1e-4)
    half, _ = load_pretrained(tmp_path, dtype=torch.bfloat16)
    assert half.tok_emb.weight.dtype == torch.bfloat16 and half.rope_cos.dtype == torch.float32
    assert torch.equal(half.tok_emb.weight.float(), ours.tok_emb.weight)


def test_unsupported_config_is_refused(family_dirs, tmp_path):
    _, path = family_dirs["qwen2"]
    for f in path.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "use_sliding_window": True}))
    with pytest.raises(ValueError, match="sliding-window"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match="GPT2LMHeadModel is not supported"):
        load_pretrained(tmp_path)
    from r1mini.checkpoint import load_checkpoint  # what the scripts call: a UserError, which they print
    from r1mini.config import UserError
    with pytest.raises(UserError, match=f"cannot load hf:{tmp_path}: .*GPT2LMHeadModel is not supported"):
        load_checkpoint(f"hf:{tmp_path}")
    with pytest.raises(UserError, match="no config.json"):
        load_checkpoint(f"hf:{tmp_path / 'nothing'}")


# -- export: ours -> Hugging Face ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def our_tokenizer():
    return Tokenizer.train(corpus(300) + ["<think> 12 + 7 = 19 </think> <answer> 19 </answer>"] * 20, 400)


@pytest.mark.parametrize("options", [{}, {"attn_bias": True}, {"qk_norm": True, "attn_head_dim": 24}],
                         ids=["llama", "qwen2", "qwen3"])
def test_export_gives_transformers_our_logits(tmp_path, our_tokenizer, options):
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=our_tokenizer.vocab_size, **options)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.5 if name.endswith("bias") else 0.1))
    save_pretrained(model, our_tokenizer, tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, our_tokenizer.vocab_size, (2, 100), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, model(idx), atol=1e-4, rtol=1e-4)
    back, tok = load_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values()))
    # the exported tokenizer.json encodes as ours does, read by tokenizers itself
    hf_tok = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in random_strings(300, seed=3):
        want = our_tokenizer.encode(text, allow_special=True)
        assert hf_tok.encode(text, add_special_tokens=False).ids == want == tok.encode(text, allow_special=True)


def test_merges_of_recovers_the_merge_order():
    ranks = {bytes([b]): b for b in range(256)} | {b"ab": 256, b"abc": 257, b"bc": 258, b"abcd": 259}
    assert merges_of(ranks) == [(b"a", b"b"), (b"ab", b"c"), (b"b", b"c"), (b"abc", b"d")]


def test_export_refuses_moe(tmp_path, our_tokenizer):
    model = Transformer(model_config("toy", vocab_size=our_tokenizer.vocab_size, n_routed_experts=4))
    with pytest.raises(ValueError, match="DeepSeekMoE"):
        save_pretrained(model, our_tokenizer, tmp_path)


def test_loaded_checkpoint_exports_back(family_dirs, tmp_path):
    """Llama 3 (RoPE scaling, untied head) through us and back: transformers gets its own logits again."""
    theirs, path = family_dirs["llama3"]
    ours, tok = load_pretrained(path)
    save_pretrained(ours, tok, tmp_path, max_shard_bytes=60_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and not (tmp_path / "model.safetensors").exists()
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    idx = torch.arange(120)[None] % theirs.config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(again(idx).logits, theirs(idx).logits, atol=1e-5, rtol=1e-5)
    assert tokenizer_from_hf(tmp_path).encode("<|im_start|>hi 12", allow_special=True) == tok.encode(
        "<|im_start|>hi 12", allow_special=True)


# -- training and scripts on an imported model ---------------------------------------------------------------------

def test_grpo_and_sft_steps_on_an_imported_model(family_dirs):
    """One GRPO step (a reward that varies within groups, so the update is not zero) and SFT through the
    checkpoint's own chat template, on an imported Qwen2 with activation checkpointing on."""
    from r1mini.formats import chat_ids, stop_ids, zero_prompt
    from r1mini.rl import GRPOConfig, grpo_step, make_policy
    from r1mini.sft import train_sft
    model, tok = load_pretrained(family_dirs["qwen2"][1])
    before = [p.detach().clone() for p in model.parameters()]
    cfg = GRPOConfig(prompts_per_step=2, group_size=4, max_new_tokens=8, activation_checkpointing=True)
    policy = make_policy(model, cfg, torch.device("cpu"))
    assert model.checkpoint_blocks
    reward = lambda completions, _: ([float(len(c) % 2) for c in completions], {})  # noqa: E731
    metrics = grpo_step(policy, tok, [tok.encode(zero_prompt(q)) for q in ("1+1?", "2+2?")], [None, None], reward,
                        cfg, step=0, stop_ids=stop_ids(tok, chat=False), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(torch.tensor(metrics["reward"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    example = chat_ids(tok, "What is 2+2?", "<think> 2+2=4 </think> <answer> 4 </answer>")
    losses = train_sft(model, [example] * 4, epochs=15, batch_size=4, lr=3e-3, warmup=1,
                       pad_id=stop_ids(tok, chat=True)[0])
    assert losses[-1] < 0.5 * losses[0]


def test_train_zero_and_eval_from_hf_checkpoint(family_dirs, tmp_path):
    """train_zero.py --init hf:DIR --tasks countdown.jsonl, then eval.py on its checkpoint and on the Hugging Face
    directory itself with a GSM8K-style test file: the scripts unchanged, our checkpoint format kept."""
    from conftest import run_script
    from r1mini.checkpoint import load_checkpoint
    _, hf_dir = family_dirs["qwen2"]
    rng = random.Random(0)
    rows = [{"target": a + b * c, "nums": [a, b, c]} for a, b, c in
            ([rng.randint(1, 9) for _ in range(3)] for _ in range(200))]
    countdown = tmp_path / "countdown.jsonl"
    countdown.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gsm = tmp_path / "gsm8k_test.jsonl"
    gsm.write_text("".join(json.dumps({"question": f"{i} + {i}?", "answer": f"{2 * i:,}"}) + "\n" for i in range(9)))
    out = tmp_path / "zero"
    r = run_script("train_zero.py", "--init", f"hf:{hf_dir}", "--tasks", countdown, "--preset", "toy", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [0, 1, 2, 3, 4]
    model, tok, meta = load_checkpoint(out)
    assert meta["parent"] == f"hf:{hf_dir}" and meta["config"]["tasks"] == str(countdown)
    assert tok.hf is not None and tok.encode("<|im_end|> 加", allow_special=True) == \
        tokenizer_from_hf(hf_dir).encode("<|im_end|> 加", allow_special=True)
    result = tmp_path / "eval.json"
    r = run_script("eval.py", "--init", f"{out},hf:{hf_dir}", "--tasks", f"{gsm}:number", "--preset", "toy",
                   "--n_problems", 4, "--out", result)
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads(result.read_text())
    assert set(results) == {str(out), f"hf:{hf_dir}"}
    assert list(results[f"hf:{hf_dir}"]["results"]) == ["gsm8k_test"]
    assert list(results[str(out)]["results"]["gsm8k_test"]["by_lang"]) == ["en"]  # the file's language only


@pytest.fixture(scope="module")
def our_export(tmp_path_factory):
    """One of our own models, Llama-shaped, pretrained here long enough to write the R1-Zero format and end its
    replies (pretrain.py --preset toy, 800 steps: ~20 s on one thread), then `python -m r1mini.export`:
    (our checkpoint, the Hugging Face directory)."""
    from conftest import run_script
    root = tmp_path_factory.mktemp("ours")
    r = run_script("pretrain.py", "--preset", "toy", "--out", root / "base", "--max_steps", 800, "--train_docs", 4000)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_script("-m", "r1mini.export", root / "base", root / "hf")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "LlamaForCausalLM" in r.stdout
    return root / "base", root / "hf"


def test_export_command_writes_our_checkpoint_for_transformers(our_export):
    from r1mini.checkpoint import load_checkpoint
    ours, _, _ = load_checkpoint(our_export[0])
    theirs = transformers.AutoModelForCausalLM.from_pretrained(our_export[1]).eval()
    idx = torch.arange(100)[None] % ours.cfg.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours.eval()(idx), atol=1e-4, rtol=1e-4)


# conversations of every shape chat_ids meets: English and Chinese, whitespace the template must strip (the
# question) or keep (the reply), a reply in R1's format, lines, a special token's text inside a question
CONVERSATIONS = [("What is 12 + 7?", " <think> 12 + 7 = 19 </think> The answer is <answer> 19 </answer>"),
                 ("  12 加 7 等于多少？\n", " <think> 12 + 7 = 19 </think> 答案是 <answer> 19 </answer>"),
                 ("Hi!\nTwo lines, then spaces   ", "Hello.\n\nHow are you?  "), ("a", " "),
                 ("Say <think> please", " <answer> 4 </answer>")]


def test_exported_chat_template_gives_our_chat_ids(our_export):
    """transformers' apply_chat_template on the exported tokenizer gives exactly formats.chat_ids's ids: the R1
    prompt with add_generation_prompt, the whole exchange with the reply, and the reply's tokens (<|end|> too) as
    the assistant mask; a system message opens the user's turn; the re-imported checkpoint (hf:) renders the
    same through r1mini's own Jinja (render_chat)."""
    from r1mini.checkpoint import load_checkpoint
    from r1mini.formats import chat_ids
    _, ours, _ = load_checkpoint(our_export[0])
    theirs = transformers.AutoTokenizer.from_pretrained(our_export[1])
    reimported = tokenizer_from_hf(our_export[1])
    for user, reply in CONVERSATIONS:
        prompt = [{"role": "user", "content": user}]
        assert theirs.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)["input_ids"] == \
            chat_ids(ours, user)[0]
        got = theirs.apply_chat_template(prompt + [{"role": "assistant", "content": reply}], tokenize=True,
                                         return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = chat_ids(ours, user, reply)
        assert got["input_ids"] == ids and got["assistant_masks"] == [int(m) for m in mask]
        assert sum(mask) == len(ours.encode(reply)) + 1  # the reply and its <|end|>
        assert chat_ids(reimported, user, reply) == (ids, mask)
    system = [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": " 2+2?"}]
    assert theirs.apply_chat_template(system, add_generation_prompt=True, tokenize=True)["input_ids"] == \
        chat_ids(ours, "Be brief.\n\n 2+2?")[0]
    with pytest.raises(Exception, match="not tool"):
        theirs.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_exported_checkpoint_generates_as_ours_in_transformers(our_export):
    """transformers alone (AutoTokenizer, AutoModelForCausalLM, generate with the exported generation_config)
    decodes greedily what our sampler decodes, and stops where ours stops, at a stop token of
    generation_config.json: <|end|> or <|endoftext|>. This base model has not learnt the chat format yet (R1's SFT
    teaches it): its chat replies run to the limit, its R1-Zero replies end at <|endoftext|>."""
    from conftest import assert_same_greedy
    from r1mini.checkpoint import load_checkpoint
    from r1mini.formats import prompt_ids, stop_ids, zero_prompt
    model, ours, _ = load_checkpoint(our_export[0])
    model.eval()
    tok = transformers.AutoTokenizer.from_pretrained(our_export[1])
    theirs = transformers.AutoModelForCausalLM.from_pretrained(our_export[1]).eval()
    assert set(theirs.generation_config.eos_token_id) == set(stop_ids(ours, chat=True)) > set(stop_ids(ours, False))
    questions = ["What is 12 + 7?", "What is 45 + 9?", "计算 3 + 8。"]
    for chat in (False, True):
        prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                           tokenize=True)["input_ids"] if chat else tok.encode(zero_prompt(q))
                   for q in questions]
        assert prompts == [prompt_ids(ours, q, chat)[0] for q in questions]
        # 120 tokens: this base's replies check themselves (~80-110 tokens)
        want = [generate(model, [p], 120, temperature=0.0, stop_ids=stop_ids(ours, chat=True))[0] for p in prompts]
        got = [theirs.generate(torch.tensor([p]), max_new_tokens=120, do_sample=False)[0, len(p):].tolist()
               for p in prompts]
        assert_same_greedy(model, prompts, got, want)
        if not chat:
            assert all(w[-1] == ours.eot_id and len(w) < 120 for w in want)  # replies that ended, not cut off
        assert [tok.decode(g, skip_special_tokens=True) for g in got] == \
            [ours.decode(w[:-1] if w[-1] in stop_ids(ours, True) else w) for w in want]


def test_r1_zero_on_our_model_brought_back_through_hf_learns(our_export, tmp_path):
    """The researcher's path at test size: our own model, pretrained and exported above, comes back as a Hugging
    Face checkpoint (hf:) into train_zero.py with a JSONL file, and R1-Zero lifts its dev pass@1 clear of the 95%
    interval it started in. The file asks N x 0 for 990 values of N: one rule, which a 34k-parameter model learns
    from the reward in 60 steps (~20 s on one thread; its replies first shrink from the checks this base writes).
    A check that the imported weights train the way ours do, not a measurement: docs/your_model.md has the
    cpu-preset run on the suite's own problems."""
    from conftest import run_script
    tasks = tmp_path / "times_zero.jsonl"
    tasks.write_text("".join(json.dumps({"question": f"What is {n} × 0?", "answer": 0, "checker": "number"},
                                        ensure_ascii=False) + "\n" for n in range(10, 1000)), encoding="utf-8")
    out = tmp_path / "zero"
    r = run_script("train_zero.py", "--preset", "toy", "--init", f"hf:{our_export[1]}", "--tasks", tasks, "--out", out,
                   "--steps", 60, "--eval_every", 60, "--eval_problems", 30, "--eval_k", 4, "--prompts_per_step", 8,
                   "--group_size", 8, "--max_new_tokens", 32, "--lr", 1e-3)
    assert r.returncode == 0, r.stdout + r.stderr
    evals = [row for row in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "eval_pass@1" in row]
    assert [row["step"] for row in evals] == [0, 60]
    before, after = evals[0]["eval_pass@1_ci"], evals[1]["eval_pass@1_ci"]
    assert after[0] > before[1] and evals[1]["eval_pass@1"] >= 0.5, evals
    meta = json.loads((out / "meta.json").read_text())
    assert meta["parent"] == f"hf:{our_export[1]}" and meta["stage"] == "zero"


def test_distill_with_hf_teacher_and_student(family_dirs, tmp_path):
    """distill.py --init hf:... --student hf:...: the teacher samples through its chat template, the student
    learns through its own; a file with English problems only is evaluated in English only."""
    from conftest import run_script
    _, hf_dir = family_dirs["qwen2"]
    tasks = tmp_path / "countdown.jsonl"
    tasks.write_text("".join(json.dumps({"target": 10 + i, "nums": [i, 10]}) + "\n" for i in range(200)))
    out = tmp_path / "student"
    r = run_script("distill.py", "--init", f"hf:{hf_dir}", "--student", f"hf:{hf_dir}", "--tasks", tasks,
                   "--preset", "toy", "--out", out, "--activation_checkpointing", "true")
    assert r.returncode == 0, r.stdout + r.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stage"] == "student/distill" and meta["metrics"]["sft_steps"] >= 1
    assert "pass@1/en" in meta["metrics"] and "pass@1/zh" not in meta["metrics"]


# Llama 3.2's template, shortened: the system date from strftime_now, headers, a refusal through raise_exception
LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- set date_string = strftime_now('%d %b %Y') %}"
    "{{- '<|im_start|>system\\n\\nToday Date: ' + date_string + '<|im_end|>' }}"
    "{%- for message in messages %}{%- if message['role'] not in ['user', 'assistant'] %}"
    "{{- raise_exception('roles must be user or assistant') }}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n\\n' + message['content'] | trim + '<|im_end|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n\\n' }}{%- endif %}")


@pytest.mark.parametrize("template", [QWEN_TEMPLATE, LLAMA3_TEMPLATE], ids=["qwen", "llama3"])
def test_chat_template_renders_as_transformers_does(tmp_path, qwen_tokenizer, template):
    from r1mini.hf import render_chat
    write_tokenizer(qwen_tokenizer, tmp_path, template=template, bos="<|endoftext|>")
    ours = tokenizer_from_hf(tmp_path)
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"),
                                                  bos_token="<|endoftext|>", eos_token="<|im_end|>")
    theirs.chat_template = template
    chat = [{"role": "user", "content": " 2+2? "}, {"role": "assistant", "content": "<think> 4 </think> 4"}]
    for messages, generation in [(chat[:1], True), (chat, False)]:
        want = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        assert render_chat(ours, messages, generation) == want
    with pytest.raises(ValueError, match="roles must be user or assistant") if template == LLAMA3_TEMPLATE else \
            contextlib.nullcontext():
        render_chat(ours, [{"role": "tool", "content": "x"}], True)
