"""speedrun.sh at the toy preset: every stage runs (the student's base beside R1-Zero and R1, the student's lane
beside the evaluation of the teacher's checkpoints), each checkpoint is evaluated, the report is written; a rerun
skips what is complete and remakes what a change touches. (The run itself is the session's toy_speedrun,
conftest.py, which other end-to-end tests read too.)"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, speedrun
from r1mini.jsonl import read_jsonl

ROWS = ["base", "R1-Zero", "R1 cold start", "R1 reasoning RL", "R1 rejection SFT", "R1 final RL",
        "student base", "student distilled", "student RL-only"]
STAGES = ["pretrain", "pretrain_student", "r1_zero", "r1", "distill", "student_rl_only", "eval_student", "eval_teacher"]
TRAINING = STAGES[:6]


def times_of(out: Path) -> dict:
    """times.tsv as {stage: (seconds, ran or skipped)}; stages side by side finish in either order, and the
    whole run's wall time is the row 'wall'."""
    rows = [line.split("\t") for line in (out / "times.tsv").read_text().splitlines()]
    assert len(rows) == len({r[0] for r in rows}), rows  # each stage once
    return {r[0]: (float(r[1]), r[2]) for r in rows}


def assert_every_stage_ran(out: Path) -> None:
    times = times_of(out)
    assert set(times) == {*STAGES, "wall"} and all(times[s][1] == "ran" for s in STAGES)
    # the run takes no less than its longest stage, and (side by side) about as long as its stages in a row or less
    assert max(times[s][0] for s in STAGES) <= times["wall"][0] <= sum(times[s][0] for s in STAGES) + 60


@pytest.fixture
def run(toy_speedrun):
    return toy_speedrun


def test_every_stage_ran_and_was_timed(run):
    out, _ = run
    assert_every_stage_ran(out)
    for sub, stage in [("base", "base"), ("student_base", "base"), ("zero", "zero"), ("r1/final_rl", "r1/final_rl"),
                       ("student", "student/distill"), ("student_zero", "zero")]:
        meta = json.loads((out / sub / "meta.json").read_text())
        assert meta["stage"] == stage and meta["done"], sub
    # the students are smaller than the teacher, and the RL-only student started from the student base
    size = lambda sub: json.loads((out / sub / "model.json").read_text())["n_layer"]  # noqa: E731
    assert size("student") == size("student_zero") == size("student_base") < size("base")
    assert json.loads((out / "student_zero" / "meta.json").read_text())["parent"] == str(out / "student_base")


def test_distillation_data_is_the_teachers_correct_samples(run):
    out, _ = run
    meta = json.loads((out / "student" / "meta.json").read_text())
    m = meta["metrics"]
    removed = sum(v for k, v in m.items() if k.startswith("filter/") and k not in ("filter/total", "filter/kept"))
    assert m["filter/total"] == 6 * 2 == m["filter/kept"] + removed  # toy: 6 prompts x 2 samples
    rows = read_jsonl(out / "student" / "distill_data.jsonl")
    assert sum(r["kind"] == "reasoning" for r in rows) == m["filter/kept"] == m["reasoning"]
    assert sum(r["kind"] == "general" for r in rows) >= 1 and len(rows) == m["examples"]


def test_report(run):
    out, r = run
    report = json.loads((out / "report.json").read_text())
    assert list(report["table"]) == ROWS
    evals = [*json.loads((out / "eval_teacher.json").read_text()), *json.loads((out / "eval_student.json").read_text())]
    assert len(evals) == len(ROWS)  # the two halves of the evaluation cover every checkpoint
    # the report's numbers are the evaluations' numbers
    zero = json.loads((out / "zero" / "eval.json").read_text())["results"]["add-2d"]
    assert report["table"]["R1-Zero"]["add-2d pass@1"] == zero["pass@1"]
    assert report["table"]["R1-Zero"]["lang zh"] == zero["by_lang"]["zh"]["lang_consistency"]
    assert {f["claim"] for f in report["findings"]} >= {"R1-Zero raises pass@1 over the base model",
                                                       "distillation beats RL alone on the student"}
    md = (out / "report.md").read_text()
    assert all(f"| {name} |" in md for name in ROWS) and "Wall time per stage" in md
    assert report["preset"] == "toy" and "**The toy preset is a smoke test.**" in md  # not the science
    assert (out / "zero_curves.png").exists() == (importlib.util.find_spec("matplotlib") is not None)
    assert "finished in" in r.stdout


def test_a_rerun_remakes_what_a_changed_command_or_code_touches(run, tmp_path):
    """The student's trap: edit a function, rerun, and nothing runs. A rerun with new flags for R1-Zero and an
    edited train_zero.py remakes both stages that run train_zero.py and the two made from R1-Zero; the bases,
    whose command and code are unchanged, are skipped. Rerun once more, it skips every training stage (each
    keeping the time it took); with KEEP=1 it skips them even after a change."""
    out = tmp_path / "out"
    shutil.copytree(run[0], out)
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "r1mini", tree / "r1mini", ignore=shutil.ignore_patterns("__pycache__"))
    for f in [*ROOT.glob("*.py"), ROOT / "speedrun.sh"]:
        shutil.copy(f, tree)
    with open(tree / "train_zero.py", "a") as f:
        f.write("# a student's edit\n")
    r = speedrun(out, root=tree, ZERO_FLAGS="--steps 3")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    times = times_of(out)
    assert [times[s][1] for s in STAGES] == ["skipped", "skipped", "ran", "ran", "ran", "ran", "ran", "ran"]
    assert f"remaking {out / 'zero'} (its command differs)" in r.stdout
    assert f"remaking {out / 'r1' / 'final_rl'} (r1_zero was remade)" in r.stdout
    assert f"remaking {out / 'student_zero'} (code changed since: train_zero.py)" in r.stdout
    assert json.loads((out / "zero" / "meta.json").read_text())["step"] == 3  # the new flags ran
    assert json.loads((out / "zero.old" / "meta.json").read_text())["step"] == 4  # the old run is kept aside
    remade = times
    r = speedrun(out, root=tree, ZERO_FLAGS="--steps 3")  # the same command again: nothing changed, all skipped
    times = times_of(out)
    assert r.returncode == 0 and [times[s][1] for s in STAGES] == ["skipped"] * 6 + ["ran"] * 2  # eval reruns
    assert [times[s][0] for s in TRAINING] == [remade[s][0] for s in TRAINING]  # a skipped stage keeps its time
    r = speedrun(out, root=tree, ZERO_FLAGS="--steps 5", KEEP="1")  # KEEP=1: skipped whatever changed
    times = times_of(out)
    assert r.returncode == 0 and [times[s][1] for s in STAGES] == ["skipped"] * 6 + ["ran"] * 2


def test_a_cpu_speedrun_stops_at_a_toy_base_in_its_folder(tmp_path):
    """The trap of a first hour: a toy base where the cpu run looks for its own. speedrun.sh does not skip a
    checkpoint of another preset, and pretrain.py refuses to resume it, naming both presets."""
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "pretrain.py", "--preset", "toy", "--out", str(out / "base"),
                        "--max_steps", "2"], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = speedrun(out, SPEEDRUN_PRESET="cpu")
    assert r.returncode != 0
    assert f"{out / 'base'} was made at preset toy, and this run is at preset cpu" in r.stderr
    assert "is complete, skipping" not in r.stdout


def test_bad_preset():
    r = subprocess.run(["bash", "speedrun.sh", "huge"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_every_stage_of_an_moe_model_on_the_cuda_branches(toy_speedruns):
    """The whole recipe with a DeepSeekMoE base, every stage on the branches CUDA takes (bf16 autocast, a bf16
    cache), emulated on the CPU: the MoE forward crashed there at the first step before its float32 sum. (The
    session runs it beside the plain toy speedrun, its stages one after the other, SIDE_BY_SIDE=0, as on a GPU:
    conftest.py.)"""
    out, r = toy_speedruns["moe"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_every_stage_ran(out)
    for sub in ("base", "zero", "r1/final_rl", "student"):
        assert json.loads((out / sub / "model.json").read_text())["n_routed_experts"] == 4, sub
    rows = [row for row in read_jsonl(out / "zero" / "log.jsonl") if "ratio_dev" in row]
    assert rows and all(row["ratio_dev"] == 0.0 and row["entropy"] > 0 for row in rows)


def test_only_the_toy_report_says_it_is_a_smoke_test(run, tmp_path):
    from r1mini.report import report
    out, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    meta = json.loads((copy / "base" / "meta.json").read_text())
    (copy / "base" / "meta.json").write_text(json.dumps({**meta, "preset": "cpu"}))
    assert report(copy)["preset"] == "cpu"
    assert "smoke test" not in (copy / "report.md").read_text()
