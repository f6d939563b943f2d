"""End to end: train_r1.py as a user runs it (subprocesses, toy preset): all four stages with their metrics and
parents (the session's toy speedrun ran `train_r1.py --preset toy --init OUT/zero --out OUT/r1`), a rerun
with nothing left, one stage rerun alone, and the errors for a bad stage or a missing R1-Zero model."""
import json
import shutil

from conftest import run_script


def test_train_r1_toy_end_to_end(toy_speedrun, tmp_path):
    out = toy_speedrun[0]
    base, zero, made, r1 = out / "base", out / "zero", out / "r1", tmp_path / "r1"
    run = lambda *a: run_script(*a, timeout=600)  # noqa: E731
    parents = {}
    for stage in ("cold_start", "reasoning_rl", "rejection_sft", "final_rl"):
        meta = json.loads((made / stage / "meta.json").read_text())
        assert meta["stage"] == f"r1/{stage}" and meta["done"]
        for key in ("pass@1/en", "pass@1/zh", "lang/en", "lang/zh"):
            assert 0 <= meta["metrics"][key] <= 1
        parents[stage] = meta["parent"]
    # SFT stages start from the base model; RL stages from the stage before
    assert parents["cold_start"] == str(base) and parents["rejection_sft"] == str(made / "reasoning_rl")
    final = json.loads((made / "final_rl" / "meta.json").read_text())["metrics"]
    assert 0 <= final["rm_accuracy"] <= 1
    rs = json.loads((made / "rejection_sft" / "meta.json").read_text())["metrics"]
    assert rs["filter/total"] == 4 * 2  # rs_prompts x rs_samples at the toy preset
    assert (made / "zero_eval.json").exists()
    shutil.copytree(made, r1)
    # everything done: a rerun (in a copy) has nothing left; one stage can be rerun alone; a bad stage name is
    # refused
    r = run("train_r1.py", "--preset", "toy", "--init", str(zero), "--out", str(r1))
    assert r.returncode == 0 and "none left" in r.stdout
    r = run("train_r1.py", "--preset", "toy", "--init", str(zero), "--out", str(r1), "--stage", "final_rl")
    assert r.returncode == 0, r.stderr[-3000:]
    r = run("train_r1.py", "--preset", "toy", "--init", str(zero), "--out", str(r1), "--stage", "bogus")
    assert r.returncode != 0 and "cold_start" in r.stderr
    # without an R1-Zero checkpoint: an error that names the script to run
    r = run("train_r1.py", "--preset", "toy", "--init", str(tmp_path / "none"), "--out", str(tmp_path / "r1b"))
    assert r.returncode != 0 and "train_zero.py" in r.stderr
