"""End to end: pretrain.py as a user runs it (subprocesses, toy preset), resuming, torchrun and gradient
accumulation. (eval.py on its checkpoint: test_eval_script.py.)"""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ENV, ROOT, run_script
from r1mini.checkpoint import load_checkpoint
from r1mini.sampling import generate

SPEED = ("time", "tokens_per_s", "tflops", "mfu", "peak_mem_mb")  # measured, not computed: differ run to run


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture
def base(toy_base) -> Path:
    return toy_base


def test_pretrain_writes_a_checkpoint(base):
    for f in ["model.pt", "model.json", "tokenizer.tiktoken", "tokenizer.json", "meta.json", "log.jsonl",
              "train_state.pt"]:
        assert (base / f).is_file(), f
    meta = json.loads((base / "meta.json").read_text())
    assert meta["stage"] == "base" and meta["step"] == 20 and meta["done"] is True
    assert meta["preset"] == "toy" and meta["config"]["max_steps"] == 20
    rows = log_rows(base)
    assert [r["step"] for r in rows] == [5, 10, 15, 20]  # toy logs every 5 steps
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3  # it learned something
    assert "val_loss" in rows[-1]


def test_the_checkpoint_holds_the_moving_average_of_the_weights(base):
    """model.pt is the exponential moving average (--ema, on by default); train_state.pt keeps the trained weights
    beside it to resume from. The average, stepped by hand: a <- decay * a + (1 - decay) * w."""
    from pretrain import update_average
    from r1mini.model import Transformer
    state = torch.load(base / "train_state.pt", weights_only=True)
    averaged, trained = state["model"], state["trained_model"]
    assert torch.equal(torch.load(base / "model.pt", weights_only=True)["tok_emb.weight"], averaged["tok_emb.weight"])
    assert all(torch.is_tensor(v) for v in trained.values()) and averaged.keys() == trained.keys()
    assert not torch.equal(averaged["tok_emb.weight"], trained["tok_emb.weight"])
    model, _, _ = load_checkpoint(base)
    other = Transformer(model.cfg)
    a0, w = model.tok_emb.weight.clone(), other.tok_emb.weight.clone()
    update_average(model, other, 0.9)
    assert torch.allclose(model.tok_emb.weight, 0.9 * a0 + 0.1 * w, atol=1e-7)


def test_lr_at_warms_up_holds_then_decays():
    """pretrain's schedule through optim.learning_rate: cosine from the warm-up's end, or with --decay_steps
    (warmup-stable-decay) the peak held until the last decay_steps, then the cosine to lr * min_lr_ratio. The
    same floats as pretrain.py's own formula before the schedule moved to optim (`before`)."""
    import math

    from pretrain import PretrainConfig, lr_at

    def before(step, cfg):
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        start = cfg.max_steps - cfg.decay_steps if cfg.decay_steps else cfg.warmup_steps
        progress = max(0.0, step - start) / max(1, cfg.max_steps - start)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
    wsd = PretrainConfig(max_steps=100, warmup_steps=10, decay_steps=30, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, wsd) == pytest.approx(1e-4) and [lr_at(s, wsd) for s in (9, 10, 50, 70)] == [1e-3] * 4
    assert lr_at(85, wsd) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5)) and lr_at(100, wsd) == pytest.approx(1e-4)
    cosine = PretrainConfig(max_steps=100, warmup_steps=10, decay_steps=0, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(55, cosine) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # halfway from step 10 to 100
    for cfg in (wsd, cosine):
        assert all(lr_at(s, cfg) == before(s, cfg) for s in range(120))
    # a run shorter than its warm-up and decay (the cpu preset's 300 decay steps with --max_steps 200) is the cosine
    short = PretrainConfig(max_steps=200, warmup_steps=50, decay_steps=300, lr=1e-3, min_lr_ratio=0.1)
    assert all(lr_at(s, short) == lr_at(s, dataclasses.replace(short, decay_steps=0)) for s in range(220))


def test_checkpoint_loads_and_generates(base):
    model, tok, meta = load_checkpoint(base, expect_stage="base")
    assert model.cfg.vocab_size == tok.vocab_size and meta["step"] == 20
    prompts = [tok.encode("Question: What is 12 + 34?\nSolution:"), tok.encode("Hello")]
    outs = generate(model, prompts, 10, temperature=0.8, stop_ids=[tok.eot_id], pad_id=tok.eot_id,
                    generator=torch.Generator().manual_seed(0))
    assert all(1 <= len(o) <= 10 and all(0 <= t < tok.vocab_size for t in o) for o in outs)
    assert all(isinstance(tok.decode(o), str) for o in outs)


def test_resume_continues(base, tmp_path):
    out = tmp_path / "base"
    shutil.copytree(base, out)
    r = run_script("pretrain.py", "--preset", "toy", "--out", out, "--max_steps", 30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming" in r.stdout and "from step 20" in r.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == 30 and meta["done"] is True
    steps = [row["step"] for row in log_rows(out)]
    assert steps == [5, 10, 15, 20, 25, 30]
    # the tokenizer of the first run was kept, not retrained
    assert (out / "tokenizer.tiktoken").read_bytes() == (base / "tokenizer.tiktoken").read_bytes()


def test_bad_arguments(tmp_path):
    r = run_script("pretrain.py", "--preset", "nope", "--out", tmp_path / "x")
    assert r.returncode != 0
    assert "nope" in r.stderr and all(p in r.stderr for p in ("toy", "cpu", "gpu"))
    r = run_script("pretrain.py", "--preset", "toy", "--out", tmp_path / "x", "--max_steps", -1)
    assert r.returncode != 0 and "max_steps" in r.stderr
    assert not (tmp_path / "x").exists()


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    """Interrupt a run between checkpoints, rerun it: the result equals the uninterrupted run's, bit for bit."""
    sys.path.insert(0, str(ROOT))
    import pretrain

    argv = lambda out: ["--preset", "toy", "--out", str(out), "--device", "cpu", "--train_docs", "300",
                        "--val_docs", "60", "--tokenizer_docs", "200", "--max_steps", "12", "--ckpt_every", "6",
                        "--eval_every", "6", "--log_every", "3"]
    pretrain.main(argv(tmp_path / "whole"))

    class Interrupted(Exception):
        pass

    calls = {"n": 0}
    real = pretrain.random_windows

    def flaky(*args, **kw):  # steps 1-6, 2 eval batches at step 6, steps 7-10, then the 11th step dies
        calls["n"] += 1
        if calls["n"] == 6 + 2 + 4 + 1:
            raise Interrupted
        return real(*args, **kw)

    monkeypatch.setattr(pretrain, "random_windows", flaky)
    with pytest.raises(Interrupted):
        pretrain.main(argv(tmp_path / "cut"))
    assert json.loads((tmp_path / "cut" / "meta.json").read_text())["step"] == 6
    monkeypatch.setattr(pretrain, "random_windows", real)
    pretrain.main(argv(tmp_path / "cut"))

    whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    drop_time = lambda rows: [{k: v for k, v in r.items() if k not in SPEED} for r in rows]
    assert drop_time(log_rows(tmp_path / "cut")) == drop_time(log_rows(tmp_path / "whole"))


def test_torchrun_two_ranks_match_one_process(tmp_path):
    """Data parallel on CPU (gloo): 2 ranks on half the global batch each end where one process ends."""
    one, two = tmp_path / "one", tmp_path / "two"
    r = run_script("pretrain.py", "--preset", "toy", "--out", str(one), "--max_steps", "6")
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "pretrain.py", "--preset",
                        "toy", "--out", str(two), "--max_steps", "6"], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world 2" in r.stdout
    a = torch.load(one / "model.pt", weights_only=True)
    b = torch.load(two / "model.pt", weights_only=True)
    # the halves' gradients are summed in another order than the whole batch's; Adam can turn such float
    # differences in near-zero gradients into differences of a fraction of one step (lr 3e-3)
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-4), name
    la = [json.loads(l) for l in (one / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(l) for l in (two / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    assert la[-1]["val_loss"] == pytest.approx(lb[-1]["val_loss"], abs=1e-4)


def test_gradient_accumulation_matches_one_batch(tmp_path):
    """--grad_accum 4 trains on the same global batch in 4 micro-batches: the same weights and losses."""
    sys.path.insert(0, str(ROOT))
    import pretrain

    argv = lambda out, accum: ["--preset", "toy", "--out", str(out), "--device", "cpu", "--train_docs", "300",
                               "--val_docs", "60", "--tokenizer_docs", "200", "--max_steps", "6", "--log_every", "3",
                               "--grad_accum", str(accum)]
    pretrain.main(argv(tmp_path / "one", 1))
    pretrain.main(argv(tmp_path / "four", 4))
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "four" / "model.pt", weights_only=True)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    la, lb = log_rows(tmp_path / "one"), log_rows(tmp_path / "four")
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], abs=2e-4)
    assert all(r["tflops"] > 0 and r["peak_mem_mb"] > 0 for r in la)
    with pytest.raises(SystemExit, match="grad_accum"):
        pretrain.main(argv(tmp_path / "bad", 3))  # toy batch 8 does not split into 3 micro-batches
