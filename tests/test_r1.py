"""R1 pieces: the chat format and its loss mask, SFT targets, the reply format, and train_r1.py end to end."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from r1mini.data import chat_ids, reasoning_reply
from r1mini.model import Transformer, model_config
from r1mini.rewards import extract_answer, parse_reasoning_reply, reasoning_text, reply_format_reward
from r1mini.sft import sft_batches, sft_targets
from r1mini.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(["What is 2 + 3? <think> 2 + 3 = 5. </think> The answer is <answer> 5 </answer>"] * 30, 270)


def test_chat_ids_mask_covers_exactly_the_reply(tok):
    ids, mask = chat_ids(tok, "What is 2 + 3?", " Hello there")
    prompt, _ = chat_ids(tok, "What is 2 + 3?")
    assert ids[:len(prompt)] == prompt and prompt[0] == tok.special("<|user|>") and prompt[-1] == tok.special("<|assistant|>")
    assert mask == [False] * len(prompt) + [True] * (len(ids) - len(prompt))
    assert ids[-1] == tok.special("<|end|>")
    assert tok.decode(ids[len(prompt):-1]) == " Hello there"


def test_sft_targets_by_hand():
    x, y = sft_targets([1, 2, 3, 4, 5], [False, False, True, True, True], pad_id=0, length=6)
    assert x == [1, 2, 3, 4, 0, 0]
    assert y == [-1, 3, 4, 5, -1, -1]  # target j is token j+1, kept only where it is the assistant's


def test_sft_loss_is_cross_entropy_on_assistant_tokens_only(tok):
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=tok.vocab_size))
    examples = [chat_ids(tok, "What is 2 + 3?", " 5"), chat_ids(tok, "Hi", " Hello, how are you?")]
    x, y = next(sft_batches(examples, 2, 64, pad_id=0, rng=__import__("random").Random(0)))
    logits, loss = model(x, y)
    # by hand: average -log p over the positions whose next token belongs to an assistant reply
    terms = []
    for b in range(x.size(0)):
        for j in range(x.size(1)):
            if y[b, j] >= 0:
                terms.append(-F.log_softmax(logits[b, j], -1)[y[b, j]])
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    n_reply = sum(sum(m[1:]) for _, m in examples)
    assert len(terms) == n_reply  # every reply token (and its <|end|>) is a target, no prompt token is


def test_reply_format():
    good = reasoning_reply("2 + 3 = 5.", "5", "en")
    assert reply_format_reward(good) == 1.0 and extract_answer(good) == "5"
    assert parse_reasoning_reply(good) == ("2 + 3 = 5.", "The answer is", "5")
    assert reasoning_text(good).strip() == "2 + 3 = 5."
    for bad in ["<think> x </think> <answer> 5 </answer>",  # no summary
                "The answer is <answer> 5 </answer>",  # no reasoning block
                "<think> x </think> The answer is <answer> </answer>",  # empty answer
                "<think> x </think> so <answer> 5 </answer> trailing",  # text after the answer
                "<think> x <answer> 4 </answer> </think> so <answer> 5 </answer>",  # nested tags
                "<think> a </think> <think> b </think> so <answer> 5 </answer>"]:  # two think blocks
        assert reply_format_reward(bad) == 0.0, bad


def test_train_r1_toy_end_to_end(tmp_path):
    base, zero, r1 = tmp_path / "base", tmp_path / "zero", tmp_path / "r1"
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run("pretrain.py", "--preset", "toy", "--out", str(base)).returncode == 0
    assert run("train_zero.py", "--preset", "toy", "--init", str(base), "--out", str(zero)).returncode == 0
    r = run("train_r1.py", "--preset", "toy", "--init", str(zero), "--out", str(r1))
    assert r.returncode == 0, r.stderr[-3000:]
    parents = {}
    for stage in ("cold_start", "reasoning_rl", "rejection_sft", "final_rl"):
        meta = json.loads((r1 / stage / "meta.json").read_text())
        assert meta["stage"] == f"r1/{stage}" and meta["done"]
        for key in ("pass@1/en", "pass@1/zh", "lang/en", "lang/zh"):
            assert 0 <= meta["metrics"][key] <= 1
        parents[stage] = meta["parent"]
    # SFT stages start from the base model; RL stages from the stage before
    assert parents["cold_start"] == str(base) and parents["rejection_sft"] == str(r1 / "reasoning_rl")
    final = json.loads((r1 / "final_rl" / "meta.json").read_text())["metrics"]
    assert 0 <= final["rm_accuracy"] <= 1
    rs = json.loads((r1 / "rejection_sft" / "meta.json").read_text())["metrics"]
    assert rs["filter/total"] == 4 * 2  # rs_prompts x rs_samples at the toy preset
    assert (r1 / "zero_eval.json").exists()
    # everything done: a rerun has nothing left; one stage can be rerun alone; a bad stage name is refused
    r = run("train_r1.py", "--preset", "toy", "--init", str(zero), "--out", str(r1))
    assert r.returncode == 0 and "none left" in r.stdout
    r = run("train_r1.py", "--preset", "toy", "--init", str(zero), "--out", str(r1), "--stage", "final_rl")
    assert r.returncode == 0, r.stderr[-3000:]
    r = run("train_r1.py", "--preset", "toy", "--init", str(zero), "--out", str(r1), "--stage", "bogus")
    assert r.returncode != 0 and "cold_start" in r.stderr
    # without an R1-Zero checkpoint: an error that names the script to run
    r = run("train_r1.py", "--preset", "toy", "--init", str(tmp_path / "none"), "--out", str(tmp_path / "r1b"))
    assert r.returncode != 0 and "train_zero.py" in r.stderr
