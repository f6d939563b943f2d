"""End to end: train_zero.py as a user runs it (subprocesses, toy preset): the checkpoint and its logs, resuming
a longer run, the off-policy path with every GRPO option on, and the error for a missing base model. The base
is the session's toy speedrun's (conftest.py)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_zero_toy_end_to_end_and_resume(toy_speedrun, tmp_path):
    base, zero = toy_speedrun[0] / "base", tmp_path / "zero"
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=ROOT, capture_output=True, text=True, timeout=300)
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
