"""End to end: eval.py as a user runs it (a subprocess, toy preset) on a pretrained toy checkpoint: the markdown
table, the JSON records, and numbers that obey the estimators' invariants and repeat with the same seed; a JSONL
file it cannot test on, a message that says what to do."""

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, questions_in, run_script, task_file


@pytest.fixture
def base(toy_base) -> Path:
    return toy_base


def test_eval_on_the_checkpoint(base, tmp_path):
    out = tmp_path / "evals.json"
    r = run_script("eval.py", "--preset", "toy", "--init", f"{base},{base}", "--k", 3, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    # the markdown table: one row per benchmark, named by the task's difficulty
    lines = r.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| benchmark"))
    assert "cons@3" in header and "pass@3" in header and "lang zh" in header
    rows = [line.strip("| ").split(" | ") for line in lines if line.startswith("| add-2d")]
    assert len(rows) == 2  # the same checkpoint twice
    record = json.loads(out.read_text())[str(base)]
    assert record == json.loads((base / "eval.json").read_text())
    assert record["stage"] == "base" and record["chat"] is False
    res = record["results"]["add-2d"]
    for name in ("pass@1", "cons@3", "pass@3", "greedy", "format", "lang_consistency"):
        assert 0 <= res[name] <= 1, name
    assert res["pass@1"] <= res["pass@3"]  # invariants of the estimators
    assert 0 < res["length"] <= 24  # tokens, at most max_new_tokens
    assert set(res["by_lang"]) == {"en", "zh"}
    # pooled over languages: the mean of the two (same number of problems each)
    mean = (res["by_lang"]["en"]["pass@1"] + res["by_lang"]["zh"]["pass@1"]) / 2
    assert abs(res["pass@1"] - mean) < 1e-9
    assert float(rows[0][1]) == pytest.approx(res["pass@1"], abs=1e-3)
    # the second evaluation of the same checkpoint with the same seed gives the same numbers
    assert rows[0] == rows[1]


def test_eval_says_what_to_do_with_a_file_it_cannot_test_on(toy_base, tmp_path):
    sys.path.insert(0, str(ROOT))
    import eval as eval_script
    run = lambda tasks, *flags: eval_script.main(["--preset", "toy", "--device", "cpu", "--init", str(toy_base),
                                                  "--tasks", str(tasks), *flags])
    no_test = task_file(tmp_path / "mine.jsonl", questions_in({"train", "dev"}, 30))
    with pytest.raises(SystemExit) as e:
        run(no_test)
    assert "mine.jsonl has no test problems (a hash of each question puts 10% of a file's lines there): name it " \
           "as a test file (mine_test.jsonl) to evaluate on every line" in str(e.value.code)
    zh = task_file(tmp_path / "zh_test.jsonl", [f"{i} 加 0 等于多少？" for i in range(5)], lang="zh")
    with pytest.raises(SystemExit) as e:
        run(zh, "--langs", "en")
    assert "has no test problems in en, only in zh: --langs zh" in str(e.value.code)
    results = run(zh)  # its own language
    assert list(results[str(toy_base)]["results"]["zh_test"]["by_lang"]) == ["zh"]
