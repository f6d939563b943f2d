"""End to end, DeepSeek-V3's options through the scripts at the toy preset: pretrain.py with MLA and an MTP
module, train_zero.py and eval.py decoding speculatively from that base, and both under torchrun (DDP over
a model whose MTP module is trained in pretraining and frozen in RL)."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import ENV, ROOT, run_script
from r1mini.checkpoint import load_checkpoint
from r1mini.sampling import generate


def log_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def v3_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("v3") / "base"
    r = run_script("pretrain.py", "--preset", "toy", "--out", out, "--max_steps", 15, "--attn", "mla",
                   "--mtp_depth", 1, "--mtp_lambda", 0.5)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_pretrain_with_mla_and_mtp(v3_base):
    model, tok, meta = load_checkpoint(v3_base)
    assert model.cfg.attn == "mla" and model.cfg.mtp_depth == 1 and len(model.mtp) == 1
    assert meta["config"]["mtp_lambda"] == 0.5
    last = log_rows(v3_base / "log.jsonl")[-1]
    assert last["val_loss"] > 0 and last["val_mtp_loss"] > 0
    # the checkpoint decodes speculatively, to the greedy tokens
    prompts = [tok.encode("Question: What is 12 + 34?"), tok.encode("Hello")]
    stats = {}
    fast = generate(model, prompts, 12, temperature=0, speculative=True, stats=stats)
    assert fast == generate(model, prompts, 12, temperature=0) and stats["drafted"] > 0


def test_train_zero_and_eval_decode_speculatively(v3_base, tmp_path):
    zero = tmp_path / "zero"
    r = run_script("train_zero.py", "--preset", "toy", "--init", v3_base, "--out", zero, "--steps", 2,
                   "--speculative", "true")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [row for row in log_rows(zero / "log.jsonl") if "reward" in row]
    assert len(rows) == 2 and all(0 <= row["draft_acceptance"] <= 1 for row in rows)
    model, _, _ = load_checkpoint(zero)
    base, _, _ = load_checkpoint(v3_base)
    assert all(torch.equal(a, b) for a, b in zip(model.mtp.parameters(), base.mtp.parameters()))  # frozen in RL
    results = {}
    for speculative in ("false", "true"):
        out = tmp_path / f"eval_{speculative}.json"
        r = run_script("eval.py", "--preset", "toy", "--init", zero, "--speculative", speculative, "--out", out)
        assert r.returncode == 0, r.stdout + r.stderr
        results[speculative] = json.loads(out.read_text())[str(zero)]
    assert "speculative decoding:" in r.stdout and results["true"]["draft_stats"]["drafted"] > 0
    for bench, res in results["false"]["results"].items():  # greedy decoding: the same answers either way
        assert results["true"]["results"][bench]["greedy"] == res["greedy"]
        assert results["true"]["results"][bench]["length"] > 0


def test_speculative_flag_on_a_checkpoint_without_mtp(toy_base):
    r = run_script("eval.py", "--preset", "toy", "--init", toy_base, "--speculative", "true")
    assert r.returncode != 0 and "--mtp_depth 1" in r.stderr


def torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", *map(str, args)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_pretrain_and_train_zero_torchrun_with_mla_and_mtp(tmp_path):
    base, zero = tmp_path / "base", tmp_path / "zero"
    r = torchrun("pretrain.py", "--preset", "toy", "--out", base, "--max_steps", 6, "--attn", "mla", "--mtp_depth", 1,
                 "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world 2" in r.stdout and "replicas in sync" in r.stdout
    assert "val_mtp_loss" in log_rows(base / "log.jsonl")[-1]
    r = torchrun("train_zero.py", "--preset", "toy", "--init", base, "--out", zero, "--steps", 2, "--eval_every", 100,
                 "--speculative", "true", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "replicas in sync" in r.stdout
    assert all(0 <= row["draft_acceptance"] <= 1 for row in log_rows(zero / "log.jsonl") if "reward" in row)
