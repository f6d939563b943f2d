"""The analysis scripts of benchmarks/ that the README's findings quote: their parsing and bookkeeping checked
on hand-made replies and logs whose answers are known."""
import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from check_anatomy import anatomy  # noqa: E402
from sweep_student_rl import run_summary  # noqa: E402

from r1mini.tasks import get_task  # noqa: E402


def reply(think: str, answer: str) -> str:
    return f" <think> {think} </think> <answer> {answer} </answer>"


def test_check_anatomy_reads_a_check_as_the_corpus_writes_it():
    add, linear = get_task("add"), get_task("linear")
    p = add.problem({"a": 929, "b": 299}, "en", random.Random(0))  # 1228
    right = anatomy("add", p, reply("... The sum is 1228. Check: 1228 - 299 = 929. Right.", "1228"))
    assert right == {"first right": True, "check sums right": True, "agrees": True, "says right": True,
                     "right, not agreeing": False, "final right": True}
    unread = anatomy("add", p, reply("... The sum is 1228. Check: 1228 - 299 = 529. Right.", "1228"))
    assert (unread["check sums right"], unread["agrees"], unread["right, not agreeing"]) == (False, False, True)
    fixed = anatomy("add", p, reply("The sum is 1218. Check: 1218 - 299 = 919, not 929. Wait, the sum is 10 "
                                    "too little: 1218 + 10 = 1228.", "1228"))
    assert (fixed["first right"], fixed["check sums right"], fixed["says right"], fixed["final right"]) == \
        (False, True, False, True)
    assert anatomy("add", p, reply("The sum is 1228.", "1228")) is None  # no check
    q = linear.problem({"a": 2, "b": -66, "x": -13, "c": -92}, "en", random.Random(0))
    a = anatomy("linear", q, reply("x = -26 / 2 = -13. Check: 2 × -13 = -26, -26 - 66 = -92. Right.", "-13"))
    assert a["check sums right"] and a["agrees"] and a["first right"] and a["final right"]
    a = anatomy("linear", q, reply("x = -4 / 2 = -2. 检查：2 × -2 = -4，-4 - 66 = -92。对了。", "-2"))
    assert not a["check sums right"] and a["agrees"] and not a["first right"] and a["says right"]


def test_the_sweep_chooses_on_the_last_dev_check(tmp_path):
    log = [{"step": 0, "eval_pass@1": 0.1}, {"step": 1, "reward": 1.0, "accuracy": 0.5, "length": 20},
           {"step": 2, "reward": 1.0, "accuracy": 0.25, "length": 40, "eval_pass@1": 0.3},
           {"step": 3, "eval_pass@1": 0.2}]
    s = run_summary(log)
    assert s["dev pass@1 last"] == 0.2 and s["dev pass@1 best"] == 0.3
    assert s["train accuracy (last 10)"] == pytest.approx(0.375) and s["length (last 10)"] == 30
    assert json.dumps(run_summary([]), allow_nan=True)  # an empty log: NaN figures, no crash


def test_gpu_check_runs_every_part_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh is for a GPU, where it has never run: its dry run on the CPU at toy size runs
    every part (the CUDA tests excepted) through the same code, so that the first GPU run fails on the GPU's
    account only. Every part ends ok, every figure that must hold does."""
    import os
    import subprocess
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DEVICE": "cpu", "MODEL": "toy", "OUT": str(tmp_path / "check"), "BUDGET": "400",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=root, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    parts = [line.split("\t") for line in (tmp_path / "check" / "parts.tsv").read_text().splitlines()]
    assert [(name, outcome) for name, outcome, _ in parts] == \
        [(name, "ok") for name in ("decode", "grpo", "cap24", "cap16", "ddp", "float32")]
    assert "BAD" not in r.stdout and r.stdout.count("\nok ") >= 8
