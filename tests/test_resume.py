"""Kill -9 a training run mid-way, rerun the same command: it resumes from its last checkpoint and ends
exactly where an uninterrupted run ends (same weights bit for bit, every log row once, in order)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from conftest import finish, start
from r1mini.checkpoint import load_train_state, save_checkpoint
from r1mini.model import Transformer, model_config
from r1mini.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run(args: list, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def rows(out: Path, name="log.jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines() if line.strip()]


def last_logged_step(out: Path, stage: str | None = None) -> int:
    try:
        logged = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines() if l.strip()]
    except (OSError, ValueError):  # not there yet, or a line half written
        return -1
    return max((r["step"] for r in logged if "step" in r and r.get("stage") == stage), default=-1)


def started(args: list) -> subprocess.Popen:
    """The command running in the background: the uninterrupted run, beside the one a test kills and resumes
    (each runs one thread: on two cores the two take little more wall time than one). finished() waits."""
    return start([sys.executable, *map(str, args)], cwd=ROOT, env=ENV)


def finished(proc: subprocess.Popen) -> None:
    r = finish(proc, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def run_and_kill(args: list, out: Path, kill_after_step: int = 0, timeout=120, stage: str | None = None,
                 when=None) -> str:
    """Start the command, SIGKILL it as soon as its log shows a step past kill_after_step (of that stage), or
    as soon as when() is true. Returns what it printed."""
    when = when or (lambda: last_logged_step(out, stage) > kill_after_step)
    stdout = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, stdout=stdout,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while proc.poll() is None and not when() and time.time() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stderr.read()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    stdout.seek(0)
    return stdout.read()


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
            "train_tokens_per_s", "seconds")  # timings and memory: they differ between any two runs


def without_time(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in MEASURED} for r in rs]


def test_pretrain_killed_mid_run_resumes_exactly(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = lambda out: ["pretrain.py", "--preset", "toy", "--device", "cpu", "--out", out, "--train_docs", 500,
                        "--val_docs", 60, "--tokenizer_docs", 300, "--max_steps", 240, "--ckpt_every", 20,
                        "--log_every", 1, "--eval_every", 60]
    uninterrupted = started(args(whole))
    kill_and_resume(args(cut), cut, kill_after_step=45, ckpt_every=20, last_step=240)
    finished(uninterrupted)
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
    script = ("import sys, train_zero\n"
              "def length_reward(completions, problems, format_weight=1.0):\n"
              "    rewards = [float(len(c) % 3 == 0) for c in completions]\n"
              "    return rewards, {'accuracy': rewards, 'format': [0.0] * len(rewards)}\n"
              "train_zero.zero_rewards = length_reward\n"
              "train_zero.main()")
    args = lambda out, ckpt_every=5: ["-c", script, "--preset", "toy", "--device", "cpu", "--init", base,
                                      "--out", out, "--steps", 50, "--ckpt_every", ckpt_every, "--eval_every", 25,
                                      "--kl_coef", 0.05, "--ref_reset_every", 7]
    whole, cut, early = tmp_path / "whole", tmp_path / "cut", tmp_path / "early"
    uninterrupted = started(args(whole))
    kill_and_resume(args(cut), cut, kill_after_step=17, ckpt_every=5, last_step=50)
    # killed before its first checkpoint: the rerun starts over, and the log does not hold the dead run's rows
    run_and_kill(args(early, ckpt_every=1000), early, kill_after_step=3)
    assert not (early / "train_state.pt").exists()
    r = run(args(early, ckpt_every=1000))
    assert r.returncode == 0 and "resuming" not in r.stdout, r.stderr[-2000:]
    finished(uninterrupted)
    assert [row["step"] for row in rows(cut)] == list(range(0, 51))  # step 0 is the evaluation before training
    assert without_time(rows(cut)) == without_time(rows(whole))  # the reward curve continues exactly
    assert rows(cut, "samples.jsonl") == rows(whole, "samples.jsonl")
    assert same_weights(cut, whole)
    assert not same_weights(whole, base) and max(r.get("kl", 0) for r in rows(whole)) > 0  # the policy did move
    assert [row["step"] for row in rows(early)] == list(range(0, 51))
    assert same_weights(early, whole)


def test_train_r1_killed_in_each_grpo_stage_resumes_exactly(toy_speedrun, tmp_path):
    """Killed in stage 2 (GRPO), in stage 3 (SFT) and in stage 4 (reward model + GRPO): each rerun resumes a
    GRPO stage from its last checkpoint, an SFT stage from its start with the random states it started with,
    and the pipeline ends where an uninterrupted one ends. (From the session toy speedrun's R1-Zero.)"""
    zero = toy_speedrun[0] / "zero"
    args = lambda out: ["train_r1.py", "--preset", "toy", "--device", "cpu", "--init", zero, "--out", out,
                        "--rl_steps", 12, "--final_steps", 9, "--rl_ckpt_every", 4, "--prompts_per_step", 4,
                        "--group_size", 4, "--general_share", 0.5]  # the reward model scores 2 of 4 prompts
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    uninterrupted = started(args(whole))
    # killed in stage 2; a later stage refuses to start from the unfinished one
    run_and_kill(args(cut), cut, 6, stage="reasoning_rl")
    meta = json.loads((cut / "reasoning_rl" / "meta.json").read_text())
    assert (meta["step"], meta["done"]) == (4, False)
    r = run([*args(cut), "--stage", "rejection_sft"])
    assert r.returncode != 0 and "unfinished reasoning_rl run" in r.stderr, r.stderr[-2000:]
    # rerun: stage 2 resumes; killed again in stage 3, once its data are sampled
    printed = run_and_kill(args(cut), cut, when=lambda: (cut / "rejection_sft_data.jsonl").exists())
    assert f"resuming {cut / 'reasoning_rl'} from step 4" in printed
    assert not (cut / "reasoning_rl" / "train_state.pt").exists()  # a finished stage keeps only its weights
    assert not (cut / "rejection_sft").exists()
    # rerun: stage 3 starts over; killed again in stage 4
    run_and_kill(args(cut), cut, 5, stage="final_rl")
    assert json.loads((cut / "final_rl" / "meta.json").read_text())["step"] == 4
    # rerun: stage 4 resumes, with the reward model it had trained, and the pipeline ends
    r = run(args(cut))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming {cut / 'final_rl'} from step 4" in r.stdout
    finished(uninterrupted)
    steps = [(row["stage"], row["step"]) for row in rows(cut) if "step" in row]
    assert steps == [("reasoning_rl", i) for i in range(1, 13)] + [("final_rl", i) for i in range(1, 10)]
    assert without_time(rows(cut)) == without_time(rows(whole))  # every stage row and curve, exactly
    for stage in ("reasoning_rl", "rejection_sft", "final_rl"):
        assert same_weights(cut / stage, whole / stage)
    # both GRPO stages did move the policy, so matching means something
    assert not same_weights(whole / "reasoning_rl", whole / "cold_start")
    assert not same_weights(whole / "final_rl", whole / "rejection_sft")


def test_train_state_carries_its_own_weights(tmp_path, monkeypatch):
    """A kill between writing model.pt and train_state.pt must not pair new weights with an old optimizer:
    the resume reads the weights saved with the optimizer."""
    import r1mini.checkpoint as checkpoint
    tok = Tokenizer.train(["12 + 34 = 46"] * 20, 270)
    model = Transformer(model_config("toy", vocab_size=tok.vocab_size))
    save_checkpoint(tmp_path, model, tok, {"stage": "base", "step": 1}, {"step": 1})
    old = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    real = checkpoint.atomic_save

    def dies_before_train_state(obj, path):
        if Path(path).name == "train_state.pt":
            raise KeyboardInterrupt  # stands in for the kill
        real(obj, path)
    monkeypatch.setattr(checkpoint, "atomic_save", dies_before_train_state)
    try:
        save_checkpoint(tmp_path, model, tok, {"stage": "base", "step": 2}, {"step": 2})
    except KeyboardInterrupt:
        pass
    state = load_train_state(tmp_path)
    assert state["step"] == 1 and all(torch.equal(state["model"][k], old[k]) for k in old)
    assert json.loads((tmp_path / "meta.json").read_text())["step"] == 1
