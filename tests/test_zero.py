"""R1-Zero pieces: the rollout's packing and masks, the language reward, and train_zero.py end to end."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from r1mini.grpo import logprobs_from_logits, rollout, sequence_logprobs
from r1mini.model import Transformer, model_config
from r1mini.filters import mixed_language
from r1mini.rewards import language_consistency, zero_reward
from r1mini.tasks import get_task
from r1mini.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    tok = Tokenizer.train(["What is 12 + 7? <think> 2 + 7 = 9 </think> <answer> 19 </answer>"] * 50, 280)
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=tok.vocab_size, tie_embeddings=False))
    return model, tok


def test_rollout_packs_prompt_and_completion_with_response_mask(tiny):
    model, tok = tiny
    prompts = ["What is 12 + 7?", "Hi"]
    ro = rollout(model, tok, [tok.encode(p) for p in prompts], group_size=3, stop_ids=[tok.eot_id], max_new_tokens=6, temperature=1.0,
                 generator=torch.Generator().manual_seed(0))
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
    ro = rollout(model, tok, [tok.encode(p) for p in ["What is 12 + 7?", "Hi"]], group_size=2, stop_ids=[tok.eot_id], max_new_tokens=5,
                 generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = sequence_logprobs(model, ro.ids)
        for i in range(4):
            n = int(ro.mask[i].nonzero().max()) + 2  # real length of row i
            alone = logprobs_from_logits(model(ro.ids[i:i + 1, :n])[:, :-1], ro.ids[i:i + 1, 1:n])
            assert torch.allclose(batched[i, :n - 1], alone[0], atol=1e-5)


def test_language_consistency_by_hand():
    assert language_consistency("Add the digits: 2 + 3 = 5.", "en") == 1.0
    assert language_consistency("从右往左", "zh") == 1.0
    # 2 English words, 4 Chinese characters: zh share 4/6
    assert language_consistency("so far 目前是进", "zh") == pytest.approx(4 / 6)
    assert language_consistency("so far 目前是进", "en") == pytest.approx(2 / 6)
    assert language_consistency("123 + 456 = 579", "zh") == 1.0  # no words of either language
    assert mixed_language("so far 目前") and not mixed_language("so far 123")
    # the tags are not English: a Chinese reply in the template does not mix languages
    assert not mixed_language("<think> 目前是 5 </think> <answer> 5 </answer>")
    with pytest.raises(ValueError):
        language_consistency("x", "fr")


def test_zero_reward_is_accuracy_and_format():
    task = get_task("add")
    import random
    p = task.sample(random.Random(0))
    good = f"<think> sum </think> <answer> {p.answer} </answer>"
    assert zero_reward(good, p) == (1.0, 1.0)
    assert zero_reward(f"<answer> {p.answer} </answer>", p) == (1.0, 0.0)  # right but no think block
    assert zero_reward("<think> sum </think> <answer> -1 </answer>", p) == (0.0, 1.0)


def test_train_zero_toy_end_to_end_and_resume(tmp_path):
    base, zero = tmp_path / "base", tmp_path / "zero"
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=ROOT, capture_output=True, text=True, timeout=300)
    r = run("pretrain.py", "--preset", "toy", "--out", str(base))
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("train_zero.py", "--preset", "toy", "--init", str(base), "--out", str(zero), "--steps", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((zero / "meta.json").read_text())
    assert meta["stage"] == "zero" and meta["step"] == 2 and meta["parent"] == str(base)
    rows = [json.loads(l) for l in (zero / "log.jsonl").read_text().splitlines()]
    for key in ("reward", "accuracy", "format", "length", "steps_share", "reflection", "mixed_lang", "kl",
                "clip_frac", "entropy", "t_gen", "t_train"):
        assert key in rows[-1], key
    assert "eval_pass@1" in rows[0] and rows[0]["step"] == 0
    assert (zero / "samples.jsonl").exists()
    # resume: a longer run continues from step 2
    r = run("train_zero.py", "--preset", "toy", "--init", str(base), "--out", str(zero), "--steps", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout
    steps = [json.loads(l)["step"] for l in (zero / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 4 and steps.count(3) == 1
    # the off-policy path: reference model with KL, mu > 1 and minibatches (old log-probs), every option on
    r = run("train_zero.py", "--preset", "toy", "--init", str(base), "--out", str(tmp_path / "zero_kl"), "--steps", "2",
            "--kl_coef", "0.05", "--mu", "2", "--minibatches", "2", "--agg", "token-mean", "--scale", "none",
            "--clip_eps_high", "0.28", "--drop_uniform_groups", "false", "--group_size", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    last = [json.loads(l) for l in (tmp_path / "zero_kl" / "log.jsonl").read_text().splitlines()][-1]
    assert last["kl"] >= 0 and 0 <= last["clip_frac"] <= 1 and last["entropy"] > 0
    # a missing base checkpoint names the script that makes it
    r = run("train_zero.py", "--preset", "toy", "--init", str(tmp_path / "nothing"), "--out", str(tmp_path / "z2"))
    assert r.returncode != 0 and "pretrain.py" in r.stderr
