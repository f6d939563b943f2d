"""End to end: train_r1.py as a user runs it (subprocesses, toy preset): all four stages with their metrics and
parents (the session's toy speedrun ran `train_r1.py --preset toy --init OUT/zero --out OUT/r1`), a rerun
with nothing left, one stage rerun alone, and the errors for a bad stage or a missing R1-Zero model; the four
stages on a JSONL task file, and the message when the file gives the cold start nothing."""
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


def test_train_r1_runs_the_four_stages_on_a_task_file(toy_base, tmp_path):
    """docs/your_model.md's recipe, "R1 on your own problems", at the toy preset: R1-Zero on a JSONL file, then
    train_r1.py's four stages on it (the file comes with the R1-Zero checkpoint). The file is all Chinese, with a
    worked "solution" on its lines: the toy R1-Zero model is never right, so its cold start is the file's
    solutions; every stage reports Chinese dev pass@1 only. Without solutions, a message says what to do."""
    from r1mini.formats import reasoning_reply
    rows = [{"question": f"{a} 加 {b} 等于多少？", "answer": str(a + b), "lang": "zh", "checker": "number",
             "solution": f"{a} + {b} = {a + b}。"} for a in range(10, 40) for b in range(1, 10)]
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    zero, r1 = tmp_path / "zero", tmp_path / "r1"
    r = run_script("train_zero.py", "--preset", "toy", "--init", toy_base, "--tasks", mine, "--out", zero)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_script("train_r1.py", "--preset", "toy", "--init", zero, "--out", r1, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    solutions = {r["question"]: reasoning_reply(r["solution"], r["answer"], "zh") for r in rows}
    data = [json.loads(line) for line in (r1 / "cold_start_data.jsonl").read_text(encoding="utf-8").splitlines()]
    assert data and all(d["assistant"] == solutions[d["user"]] for d in data)
    for stage in ("cold_start", "reasoning_rl", "rejection_sft", "final_rl"):
        meta = json.loads((r1 / stage / "meta.json").read_text(encoding="utf-8"))
        assert meta["done"] and meta["config"]["tasks"] == "" and 0 <= meta["metrics"]["pass@1/zh"] <= 1
        assert "pass@1/en" not in meta["metrics"]
    assert json.loads((r1 / "cold_start" / "meta.json").read_text())["metrics"]["from_tasks"] == len(data)
    # the same file without its solutions: nothing to start from, and the message says what to do
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "solution"}, ensure_ascii=False) + "\n"
                            for r in rows), encoding="utf-8")
    r = run_script("train_r1.py", "--preset", "toy", "--init", zero, "--tasks", bare, "--out", tmp_path / "r1b")
    assert r.returncode == 1
    assert "no cold-start data" in r.stderr and "has no \"solution\" on its lines. Train R1-Zero longer" in r.stderr
