"""Tests for r1mini.tokenizer: BPE training, tiktoken equivalence, digits/tags, save/load."""

import random

import pytest
import regex
import tiktoken.load

from r1mini.tokenizer import PATTERN, SPECIAL_TOKENS, Tokenizer, train_bpe

VOCAB = 400


def make_corpus(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    subjects = ["the model", "a student", "the teacher", "my friend", "the computer"]
    verbs = ["computes", "checks", "explains", "writes down", "verifies"]
    objects = ["the answer", "the sum", "a long proof", "the result", "every step"]
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        lines.append(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}.")
        lines.append(f"{a} + {b} = {a + b}")
        lines.append(f"<think> first add {a} and {b}, carefully. </think> <answer> {a + b} </answer>")
        lines.append(f"<think>\n{a} plus {b}, carefully.\n</think>\n<answer>{a + b}</answer>")
        x, y = rng.randint(1, 20), rng.randint(1, 20)
        lines.append(f"计算 {x} 加 {y} 等于多少？答案是{x + y}。")
    return lines


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return make_corpus()


@pytest.fixture(scope="module")
def tok(corpus) -> Tokenizer:
    return Tokenizer.train(corpus, VOCAB)


def reference_encode(text: str, ranks: dict[bytes, int]) -> list[int]:
    """Naive BPE: within each pre-token chunk, repeatedly merge the adjacent pair of lowest rank."""
    ids = []
    for chunk in regex.findall(PATTERN, text):
        parts = [bytes([b]) for b in chunk.encode("utf-8")]
        while True:
            cands = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
            if not cands:
                break
            _, i = min(cands)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids += [ranks[p] for p in parts]
    return ids


SAMPLES = [
    "the model computes the answer.",
    "an unseen word: xylophonist quibbles",
    "347 + 586 = 933",
    "<think> first add 3 and 4 </think> <answer> 7 </answer>",
    "计算 12 加 7 等于多少？答案是19。",
    "emoji 🙂🚀 and accents: café, naïve",
    "  leading spaces,\ttabs\t\tand\n\nnewlines\r\n  trailing   ",
    "text with <|endoftext|> and <|user|> inside",
    "",
]


def test_round_trip(tok):
    for s in SAMPLES:
        assert tok.decode(tok.encode(s)) == s
    ids = tok.encode("a <|endoftext|> b")
    assert not set(ids) & set(tok.special_tokens.values())  # specials in text stay ordinary text
    assert tok.encode_batch(SAMPLES) == [tok.encode(s) for s in SAMPLES]


def test_digits_are_single_tokens(tok):
    ids = tok.encode("1234567890")
    assert [tok.decode([t]) for t in ids] == list("1234567890")
    s = "12345 + 67890 = 80235"
    digit_tokens = [t for t in tok.encode(s) if tok.decode([t]).strip().isdigit()]
    assert [tok.decode([t]) for t in digit_tokens] == [c for c in s if c.isdigit()]


def test_tags_become_single_tokens(tok):
    for tag in ["<think>", "</think>", "<answer>", "</answer>", " </think>", " <answer>", " </answer>"]:
        assert len(tok.encode(tag)) == 1, tag


def test_frequent_words_merged(tok):
    word = " carefully"  # appears 600 times in the corpus
    assert len(tok.encode(word)) < len(word.encode("utf-8"))
    assert len(tok.encode(word)) == 1


def test_matches_reference_bpe(tok):
    assert len(tok.ranks) == VOCAB
    for s in SAMPLES + make_corpus(20, seed=1):
        assert tok.encode(s) == reference_encode(s, tok.ranks), s


def reference_train(texts: list[str], vocab_size: int) -> dict[bytes, int]:
    """Naive BPE training: recount every pair from scratch before each merge."""
    words = [[bytes([b]) for b in c.encode("utf-8")] for t in texts for c in regex.findall(PATTERN, t)]
    ranks = {bytes([i]): i for i in range(256)}
    while len(ranks) < vocab_size:
        counts = {}
        for w in words:
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        if counts[pair] < 2:
            break
        ranks.setdefault(pair[0] + pair[1], len(ranks))
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == pair:
                    w[i:i + 2] = [pair[0] + pair[1]]
                i += 1
    return ranks


def test_matches_reference_training():
    texts = make_corpus(30, seed=2) + ["aaaaaaa abababab abcabc ab+c a+bc", "🙂🙂🙂 ... ---- !!!"]
    assert train_bpe(texts, 330) == reference_train(texts, 330)


def test_merged_tokens_are_concatenations(tok):
    # every rank >= 256 must be buildable from two lower-rank tokens, as tiktoken assumes
    by_rank = sorted(tok.ranks, key=tok.ranks.get)
    assert by_rank[:256] == [bytes([i]) for i in range(256)]
    for r, b in enumerate(by_rank[256:], 256):
        assert any(b[:k] in tok.ranks and b[k:] in tok.ranks and tok.ranks[b[:k]] < r
                   and tok.ranks[b[k:]] < r for k in range(1, len(b)))


def test_special_ids(tok):
    ids = [tok.special(s) for s in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    assert min(ids) == len(tok.ranks)
    assert tok.eot_id == tok.special("<|endoftext|>")
    assert tok.vocab_size == len(tok.ranks) + len(SPECIAL_TOKENS) == VOCAB + len(SPECIAL_TOKENS)
    assert tok.decode([tok.special("<|user|>")]) == "<|user|>"
    with pytest.raises(KeyError, match="unknown special token"):
        tok.special("<|nope|>")


def test_save_load(tok, tmp_path, monkeypatch):
    tok.save(tmp_path)
    tok2 = Tokenizer.load(tmp_path)
    for s in SAMPLES:
        assert tok2.encode(s) == tok.encode(s)
    assert tok2.special_tokens == tok.special_tokens and tok2.eot_id == tok.eot_id
    assert tok2.vocab_size == tok.vocab_size
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the file directly, no cache side effects
    assert tiktoken.load.load_tiktoken_bpe(str(tmp_path / "tokenizer.tiktoken")) == tok.ranks
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files behind


def test_errors(tok, tmp_path):
    with pytest.raises(ValueError, match="256"):
        train_bpe(["hello"], 255)
    with pytest.raises(FileNotFoundError, match="pretrain.py"):
        Tokenizer.load(tmp_path)
    tok.save(tmp_path)
    path = tmp_path / "tokenizer.tiktoken"
    lines = path.read_text().splitlines()
    lines[299] = "not-base64!! 299"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 300:"):
        Tokenizer.load(tmp_path)


def test_deterministic(corpus, tok):
    assert train_bpe(corpus, VOCAB) == tok.ranks
    # rank order, not just the dict contents, must be reproducible
    assert list(train_bpe(corpus, VOCAB).items()) == list(tok.ranks.items())


def test_stops_when_no_pair_repeats():
    ranks = train_bpe(["abab"], 1000)  # (a,b) occurs twice -> one merge, then nothing repeats
    assert len(ranks) == 257 and ranks[b"ab"] == 256
