"""The analysis scripts of benchmarks/ that the README's findings quote: their parsing and bookkeeping checked
on hand-made replies and logs whose answers are known."""
import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from check_anatomy import anatomy, first_slip  # noqa: E402
from sweep_student_rl import run_summary  # noqa: E402

from r1mini.tasks import get_task  # noqa: E402


def reply(think: str, answer: str) -> str:
    return f" <think> {think} </think> <answer> {answer} </answer>"


def test_check_anatomy_reads_a_check_as_the_corpus_writes_it():
    add, linear = get_task("add"), get_task("linear")
    p = add.problem({"a": 854, "b": 714}, "en", random.Random(0))  # 1568
    first = "Add by columns: 854+714: 4+4=8, so far 8. 85+71: 5+1=6, so far 68. 8+7: 8+7=15, so far 1568."
    check = ("Check by swapping: 714+854 vs 1568: 4+4=8, 8 and 8 agree. 71+85 vs 156: 1+5=6, 6 and 6 agree. "
             "7+8 vs 15: 7+8=15, 15 and 15 agree. Right.")
    assert check == " ".join(en for en, _ in add.check_steps(p.data, "1568", random.Random(0))[0])  # the corpus's
    right = anatomy("add", p, reply(f"{first} {check}", "1568"))
    assert right == {"first right": True, "first facts": True, "check facts": True, "copied": True, "verdicts": True,
                     "agrees": True, "says right": True, "right if agreeing": True, "right, not agreeing": False,
                     "final right": True, "final right after a wait": None, "cut off": False}
    # "agree" said of two different digits: the comparison not read
    unread = anatomy("add", p, reply(f"{first} {check.replace('1+5=6, 6 and 6', '1+5=7, 7 and 6')}", "1568"))
    assert (unread["check facts"], unread["verdicts"], unread["agrees"], unread["says right"],
            unread["right, not agreeing"]) == (False, False, False, True, True)
    # the claim's digit copied wrong into the comparison
    miscopied = anatomy("add", p, reply(f"{first} {check.replace('6 and 6', '6 and 5')}", "1568"))
    assert not miscopied["copied"] and not miscopied["verdicts"]
    slipped = first.replace("5+1=6, so far 68", "5+1=7, so far 78").replace("1568", "1578")
    caught = (f"{slipped} Check by swapping: 714+854 vs 1578: 4+4=8, 8 and 8 agree. 71+85 vs 157: 1+5=6, 6 and 7 "
              f"differ. Wait, add again. {first[len('Add by columns: '):]}")
    a = anatomy("add", p, reply(caught, "1568"))
    assert (a["first right"], a["first facts"], a["check facts"], a["copied"], a["verdicts"], a["agrees"],
            a["says right"], a["final right"], a["final right after a wait"]) == \
        (False, False, True, True, True, False, False, True, True)
    cut = anatomy("add", p, f" <think> {caught[:-40]}")  # out of tokens in the second pass: no answer
    assert cut["cut off"] and cut["final right after a wait"] is False
    assert anatomy("add", p, reply(first, "1568")) is None  # no check
    assert first_slip("add", p.data, slipped) == "fact: sum one off"
    assert first_slip("add", p.data, first.replace("85+71", "85+72").replace("5+1=6", "5+2=7")) == "copy"
    dropped = "854+714: 4+4=8, so far 8. 85+71: 5+1=6, so far 68. 8+7: 8+7=15, so far 1568."
    q = add.problem({"a": 857, "b": 714}, "en", random.Random(0))  # 1571: a carry into the tens
    assert first_slip("add", q.data, dropped.replace("854", "857").replace("4+4=8", "7+4=11").replace(
        "so far 8.", "so far 1, carry 1.").replace("so far 68", "so far 61").replace("1568", "1561")) == "carry dropped"
    assert first_slip("add", q.data, dropped.replace("854", "857").replace("4+4=8", "7+4=11").replace(
        "so far 8.", "so far 1, carry 1.").replace("5+1=6", "5+1+1=6").replace("1568", "1561")) == \
        "fact: carry written, not added"
    m = get_task("mul").problem({"a": 347, "b": 6}, "en", random.Random(0))
    mul = "347×6: 7×6=42, so far 2, carry 4. 34×6: 4×6=24, 24+4=28, so far 82, carry 2. 3×6: 3×6=18, 18+2=20"
    assert first_slip("mul", m.data, mul.replace("24+4=28", "24+4=27")) == "fact: carry added wrong"
    assert first_slip("mul", m.data, mul.replace("4×6=24, 24+4=28", "4×6=28, 28+4=32")) == "fact: product"
    lin = linear.problem({"a": 2, "b": 14, "x": -9, "c": -4}, "en", random.Random(0))
    rng = random.Random(0)
    steps = linear.steps(lin.data, rng, slip=False)[0] + linear.check_steps(lin.data, "-9", rng)[0]
    text = " ".join(en for en, _ in steps)
    assert text == ("Subtract 14 on both sides: 2x=-4-14=-18. Divide by 2: x=-18/2=-9. Check x=-9 in 2x+14=-4: "
                    "2×-9=-18, -18+14=-4, -4 and -4 agree. Right.")
    a = anatomy("linear", lin, reply(text, "-9"))
    assert all(a[key] for key in ("check facts", "copied", "agrees", "first right", "says right", "final right"))
    a = anatomy("linear", lin, reply(text.replace("-18+14=-4, -4 and -4 agree. Right.",
                                                  "-18+14=-3, -3 and -4 differ. Wait, solve again."), "-9"))
    assert not a["check facts"] and not a["agrees"] and not a["says right"] and not a["right, not agreeing"]
    move = "Subtract 14 on both sides: 2x=-4-14=-16. Divide by 2: x=-16/2=-8."  # -18 + 2, a multiple of a = 2
    assert first_slip("linear", lin.data, move) == "move, still divisible by a"
    assert first_slip("linear", lin.data, move.replace("-16", "-17").replace("=-8.", "=-8.5.")) == "move"
    assert first_slip("linear", lin.data, move.replace("-4-14=-16", "-4-14=-18").replace("-16/2", "-18/2")) == (
        "division")


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


def test_pretrain_curves_reads_the_dev_checks_and_the_spread():
    from pretrain_curves import curve_rows, spread
    log = [{"step": 10, "loss": 3.0},
           {"step": 100, "val_loss": 0.5, "dev_add-3d_pass@1": 0.1, "dev_add-3d_steps_share": 0.3,
            "dev_mul-3x1_pass@1": 0.2},
           {"step": 200, "val_loss": 0.4, "dev_add-3d_pass@1": 0.3, "dev_mul-3x1_pass@1": 0.25}]
    rows = curve_rows(log)
    assert [r["step"] for r in rows] == [100, 200] and rows[0]["benches"]["add-3d"] == {"pass@1": 0.1,
                                                                                        "steps_share": 0.3}
    other = curve_rows([{"step": 200, "dev_add-3d_pass@1": 0.4, "dev_mul-3x1_pass@1": 0.05}])
    text = spread({"a": rows, "b": other})
    assert "| spread (max - min) | 0.100 | 0.200 |" in text  # 0.4 - 0.3 and 0.25 - 0.05
