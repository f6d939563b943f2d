"""End to end: train_zero.py as a user runs it (subprocesses, toy preset): the checkpoint and its logs, resuming
a longer run, the off-policy path with every GRPO option on, and the error for a missing base model (the base is
the session's toy speedrun's, conftest.py); JSONL task files of every shape (one language, no dev problems, a
test file, no training problems), each a run or a message that says what to do."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import questions_in, task_file

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


# -- JSONL task files of every shape ---------------------------------------------------------------------------

def test_train_zero_on_task_files_of_every_shape(toy_base, tmp_path, capsys):
    """A file in one language is checked in that language (all Chinese: its Chinese dev problems); a file whose
    hash left no dev problems trains unwatched, saying so; a test file, and a file with no training problems,
    stop with a message that says what to do."""
    sys.path.insert(0, str(ROOT))
    import train_zero
    run = lambda tasks, out: train_zero.main(["--preset", "toy", "--device", "cpu", "--init", str(toy_base), "--out",
                                              str(tmp_path / out), "--tasks", str(tasks), "--steps", "2"])
    zh = task_file(tmp_path / "zh.jsonl", [f"{i} 加 0 等于多少？" for i in range(400)], lang="zh")
    run(zh, "zh")
    rows = [json.loads(line) for line in (tmp_path / "zh" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval_pass@1" in r] == [0, 2]
    lo, hi = rows[0]["eval_pass@1_ci"]
    assert 0 <= lo <= rows[0]["eval_pass@1"] <= hi <= 1
    samples = [json.loads(line) for line in (tmp_path / "zh" / "samples.jsonl").read_text().splitlines()]
    assert samples and all("加" in s["question"] for s in samples)
    assert "dev check on 2 zh problems" in capsys.readouterr().out

    no_dev = task_file(tmp_path / "small.jsonl", questions_in({"train", "test"}, 30))
    run(no_dev, "small")
    assert "has no dev problems (a hash of each question puts 5% of a file's lines there), so the dev checks are " \
           "skipped" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "small" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and not any("eval_pass@1" in r for r in rows)

    for tasks, message in [(task_file(tmp_path / "gsm_test.jsonl", questions_in({"train"}, 30)),
                            "has no dev problems (a test file is held out whole): train on a file with train "
                            "problems, and evaluate on this one with eval.py"),
                           (task_file(tmp_path / "heldout.jsonl", questions_in({"dev", "test"}, 30)),
                            "has no train problems: use a file with train problems")]:
        with pytest.raises(SystemExit) as e:
            run(tasks, "stopped")
        assert message in str(e.value.code)

