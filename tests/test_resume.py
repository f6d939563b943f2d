"""Kill -9 a training run mid-way, rerun the same command: it resumes from its last checkpoint and ends
exactly where an uninterrupted run ends (same weights bit for bit, every log row once, in order)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from r1mini.common import load_train_state, save_checkpoint
from r1mini.model import Transformer, model_config
from r1mini.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run(args: list, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def rows(out: Path, name="log.jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines() if line.strip()]


def last_logged_step(out: Path) -> int:
    try:
        return max((json.loads(l)["step"] for l in (out / "log.jsonl").read_text().splitlines() if l.strip()), default=-1)
    except (OSError, ValueError):  # not there yet, or a line half written
        return -1


def run_and_kill(args: list, out: Path, kill_after_step: int, timeout=120) -> None:
    """Start the command, SIGKILL it as soon as its log shows a step past kill_after_step."""
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while proc.poll() is None and last_logged_step(out) <= kill_after_step and time.time() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stderr.read()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def kill_and_resume(args: list, cut: Path, kill_after_step: int, ckpt_every: int, last_step: int) -> int:
    """Run, SIGKILL past kill_after_step, rerun the same command; check it resumed from its last checkpoint
    and finished. Returns the step it resumed from."""
    run_and_kill(args, cut, kill_after_step)
    killed_at = json.loads((cut / "meta.json").read_text())["step"]
    assert kill_after_step - ckpt_every < killed_at < last_step and killed_at % ckpt_every == 0
    r = run(args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming {cut} from step {killed_at}" in r.stdout
    meta = json.loads((cut / "meta.json").read_text())
    assert meta["step"] == last_step and meta["done"] is True
    return killed_at


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


MEASURED = ("time", "tokens_per_s", "t_gen", "t_train", "tflops", "mfu", "peak_mem_mb", "gen_tokens_per_s",
            "train_tokens_per_s")  # timings and memory: they differ between any two runs


def without_time(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in MEASURED} for r in rs]


def test_pretrain_killed_mid_run_resumes_exactly(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = lambda out: ["pretrain.py", "--preset", "toy", "--device", "cpu", "--out", out, "--train_docs", 500,
                        "--val_docs", 60, "--tokenizer_docs", 300, "--max_steps", 240, "--ckpt_every", 20,
                        "--log_every", 1, "--eval_every", 60]
    r = run(args(whole))
    assert r.returncode == 0, r.stderr[-2000:]
    kill_and_resume(args(cut), cut, kill_after_step=45, ckpt_every=20, last_step=240)
    assert [row["step"] for row in rows(cut)] == list(range(1, 241))  # every step once, in order
    assert without_time(rows(cut)) == without_time(rows(whole))  # the loss curve continues exactly
    assert same_weights(cut, whole)


def test_train_zero_killed_mid_run_resumes_exactly(tmp_path):
    base = tmp_path / "base"
    r = run(["pretrain.py", "--preset", "toy", "--device", "cpu", "--out", base, "--train_docs", 500,
             "--val_docs", 60, "--tokenizer_docs", 300, "--max_steps", 30])
    assert r.returncode == 0, r.stderr[-2000:]
    # A toy base never earns the real rewards, so every group ties and the policy would never move; this
    # reward depends on the completion's length instead (deterministically, so runs stay comparable).
    # KL on, with a reference reset that falls between checkpoints: the resumed run must restore the reference.
    script = ("import sys, train_zero; train_zero.zero_reward = lambda c, p: (float(len(c) % 3 == 0), 0.0); "
              "train_zero.main()")
    args = lambda out, ckpt_every=5: ["-c", script, "--preset", "toy", "--device", "cpu", "--init", base,
                                      "--out", out, "--steps", 50, "--ckpt_every", ckpt_every, "--eval_every", 25,
                                      "--kl_coef", 0.05, "--ref_reset_every", 7]
    whole, cut, early = tmp_path / "whole", tmp_path / "cut", tmp_path / "early"
    r = run(args(whole))
    assert r.returncode == 0, r.stderr[-2000:]
    kill_and_resume(args(cut), cut, kill_after_step=17, ckpt_every=5, last_step=50)
    assert [row["step"] for row in rows(cut)] == list(range(0, 51))  # step 0 is the evaluation before training
    assert without_time(rows(cut)) == without_time(rows(whole))  # the reward curve continues exactly
    assert rows(cut, "samples.jsonl") == rows(whole, "samples.jsonl")
    assert same_weights(cut, whole)
    assert not same_weights(whole, base) and max(r.get("kl", 0) for r in rows(whole)) > 0  # the policy did move

    # killed before its first checkpoint: the rerun starts over, and the log does not hold the dead run's rows
    run_and_kill(args(early, ckpt_every=1000), early, kill_after_step=3)
    assert not (early / "train_state.pt").exists()
    r = run(args(early, ckpt_every=1000))
    assert r.returncode == 0 and "resuming" not in r.stdout, r.stderr[-2000:]
    assert [row["step"] for row in rows(early)] == list(range(0, 51))
    assert same_weights(early, whole)


def test_train_state_carries_its_own_weights(tmp_path, monkeypatch):
    """A kill between writing model.pt and train_state.pt must not pair new weights with an old optimizer:
    the resume reads the weights saved with the optimizer."""
    import r1mini.common as common
    tok = Tokenizer.train(["12 + 34 = 46"] * 20, 270)
    model = Transformer(model_config("toy", vocab_size=tok.vocab_size))
    save_checkpoint(tmp_path, model, tok, {"stage": "base", "step": 1}, {"step": 1})
    old = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    real = common.atomic_save

    def dies_before_train_state(obj, path):
        if Path(path).name == "train_state.pt":
            raise KeyboardInterrupt  # stands in for the kill
        real(obj, path)
    monkeypatch.setattr(common, "atomic_save", dies_before_train_state)
    try:
        save_checkpoint(tmp_path, model, tok, {"stage": "base", "step": 2}, {"step": 2})
    except KeyboardInterrupt:
        pass
    state = load_train_state(tmp_path)
    assert state["step"] == 1 and all(torch.equal(state["model"][k], old[k]) for k in old)
    assert json.loads((tmp_path / "meta.json").read_text())["step"] == 1
