"""The report's verdicts, on evaluations made up so that the answer is known: a clear gain is reproduced,
no difference is within noise, a loss is reversed; the numbers in the table are the evaluations'."""
import json
import math
import random
import shutil

import pytest

from r1mini.report import across_runs, interval, markdown_table, report, verdict


def test_verdict_reads_the_interval():
    assert verdict([0.01, 0.2]) == "reproduced"
    assert verdict([-0.05, 0.2]) == "within noise"
    assert verdict([-0.2, -0.01]) == "reversed"
    assert verdict([-0.015, 0.03], margin=0.02) == "reproduced"  # no loss beyond the margin
    assert verdict([-0.1, -0.03], margin=0.02) == "not reproduced"
    assert verdict([float("nan"), float("nan")]) == "not measured"


def fake_eval(path, pass1: list[float], k: int = 4):
    """An eval.json of one benchmark whose per-problem pass@1 is pass1 (and cons@k the same)."""
    n = len(pass1)
    result = {"pass@1": sum(pass1) / n, f"cons@{k}": sum(pass1) / n, "pass@1_ci": [0.0, 1.0],
              f"cons@{k}_ci": [0.0, 1.0], "format": 1.0, "length": 10.0, "lang_consistency": 1.0,
              "problems": [f"en:{i}" for i in range(n)],
              "per_problem": {"pass@1": pass1, f"cons@{k}": pass1, "lang_consistency": [1.0] * n},
              "by_lang": {"zh": {"lang_consistency": 1.0, "per_problem": {"lang_consistency": [1.0] * n}}}}
    path.mkdir(parents=True)
    (path / "eval.json").write_text(json.dumps({"config": {"k": k}, "results": {"add-3d": result}}))


@pytest.mark.parametrize("zero, expected", [(0.6, "reproduced"), (0.3, "within noise"), (0.0, "reversed")])
def test_a_finding_is_decided_on_its_interval(tmp_path, zero, expected):
    rng = random.Random(0)
    base = [float(rng.random() < 0.3) for _ in range(400)]
    fake_eval(tmp_path / "base", base)
    # R1-Zero: right where the base was, plus (or minus) problems chosen at random, to a share of `zero`
    zero_scores = [1.0 if rng.random() < zero else 0.0 for _ in base] if zero != 0.3 else base[:]
    fake_eval(tmp_path / "zero", zero_scores)
    found = {f["claim"]: f for f in report(tmp_path)["findings"]}
    f = found["R1-Zero raises pass@1 over the base model"]
    assert f["verdict"] == expected, f
    assert f["interval"][0] <= f["difference"] <= f["interval"][1]
    assert f["difference"] == pytest.approx(sum(zero_scores) / 400 - sum(base) / 400)
    md = (tmp_path / "report.md").read_text()
    assert f"- {expected}: R1-Zero raises pass@1 over the base model" in md
    assert "| base | ?L/? | 0." in md and "[0.00, 1.00]" in md  # the value, then the evaluation's interval
    json.loads((tmp_path / "report.json").read_text(), parse_constant=lambda c: 1 / 0)  # strict: no NaN


def test_reflecting_replies_are_compared_on_the_problems_with_both_kinds(tmp_path):
    """The reflection finding pairs, per problem, the accuracy of R1-Zero's replies that reflect with that of
    those that do not, over the problems with replies of both kinds only (None elsewhere)."""
    fake_eval(tmp_path / "base", [0.5] * 6)
    fake_eval(tmp_path / "zero", [0.5] * 6)
    record = json.loads((tmp_path / "zero" / "eval.json").read_text())
    per = record["results"]["add-3d"]["per_problem"]
    per["reflect_acc"] = [1.0, 1.0, 0.5, None, 1.0, 1.0]
    per["plain_acc"] = [0.0, 0.5, 0.5, 0.0, None, 0.0]
    record["results"]["add-3d"]["reflect_share"] = 0.4
    (tmp_path / "zero" / "eval.json").write_text(json.dumps(record))
    found = {f["claim"].split(" (")[0]: f for f in report(tmp_path)["findings"]}
    f = found["R1-Zero's replies that reflect are at least as accurate as those that do not"]
    assert f["difference"] == pytest.approx((1 + 1 + 0.5 + 1) / 4 - (0 + 0.5 + 0.5 + 0) / 4)
    assert "0.40 of the test replies reflect; on the 4 problems" in f["detail"] and f["verdict"] == "reproduced"


def test_the_aha_sample_is_a_reply_that_catches_its_own_slip(tmp_path):
    """train_zero.py logs per step the right replies that reflect, those that correct themselves ("wait") first;
    the report quotes the latest whose arithmetic reads clean (one wrong fact in the first pass, caught by a check
    whose facts and comparisons are right, then a right second pass), else the latest that corrects itself, else
    the latest."""
    from r1mini.report import aha_sample, catches_its_slip
    from train_zero import log_aha
    from r1mini.tasks import Problem
    p = Problem("add", "What is 854 + 714?", "en", "1568", {"a": 854, "b": 714})
    first = "854+714: 4+4=8, so far 8. 85+71: 5+1=6, so far 68. 8+7: 8+7=15, so far 1568."
    slipped = first.replace("5+1=6, so far 68", "5+1=7, so far 78").replace("1568", "1578")
    confirm = f"<think>{first} Check by swapping: 714+854 vs 1568: 4+4=8, 8 and 8 agree. 71+85 vs 156: 1+5=6, " \
              f"6 and 6 agree. 7+8 vs 15: 7+8=15, 15 and 15 agree. Right.</think><answer>1568</answer>"
    fixed = f"<think>{slipped} Check by swapping: 714+854 vs 1578: 4+4=8, 8 and 8 agree. 71+85 vs 157: 1+5=6, " \
            f"6 and 7 differ. Wait, add again. {first}</think><answer>1568</answer>"
    lucky = fixed.replace("8+7=15, so far 1568", "8+7=16, so far 1568")  # a second slip in the second pass
    plain = f"<think>{first}</think><answer>1568</answer>"
    assert catches_its_slip(fixed) and not catches_its_slip(lucky) and not catches_its_slip(confirm)
    assert not catches_its_slip(fixed.replace("5+1=7, so far 78", "5+1=6, so far 68"))  # nothing to catch
    # a comparison that sets the wrong digit beside its own (the claim's units digit is 8, not 9)
    assert not catches_its_slip(fixed.replace("8 and 8 agree. 71", "8 and 9 differ. 71"))
    assert not catches_its_slip(fixed.replace("6 and 7 differ", "6 and 7 agree"))  # a verdict that is wrong
    log_aha(tmp_path / "aha.jsonl", 1, {"completions": [plain, confirm, fixed], "items": [p] * 3,
                                        "accuracy": [1.0, 1.0, 1.0]})
    log_aha(tmp_path / "aha.jsonl", 2, {"completions": [confirm, lucky, plain], "items": [p] * 3,
                                        "accuracy": [1.0, 1.0, 1.0]})
    log_aha(tmp_path / "aha.jsonl", 3, {"completions": [fixed], "items": [p], "accuracy": [0.0]})  # wrong: not kept
    rows = [json.loads(line) for line in (tmp_path / "aha.jsonl").read_text().splitlines()]
    assert [(r["step"], r["completion"], r["corrects"]) for r in rows] == [
        (1, fixed, True), (1, confirm, False), (2, lucky, True), (2, confirm, False)]
    pick = aha_sample(tmp_path)
    assert (pick["step"], pick["completion"], pick["clean"]) == (1, fixed, True)  # clean beats later
    (tmp_path / "aha.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    pick = aha_sample(tmp_path)
    assert (pick["step"], pick["completion"], pick["clean"]) == (2, lucky, False)  # else the latest that corrects
    (tmp_path / "aha.jsonl").write_text(json.dumps(rows[1]) + "\n")
    assert aha_sample(tmp_path)["completion"] == confirm


def test_reflection_on_the_test_split_is_paired_over_problems(tmp_path):
    """R1-Zero's reflection against the base's, per problem (reflection words per reply, the mean over its k
    replies), on the same test problems: the difference and its paired interval."""
    for name, words in (("base", [0.0, 0.25, 0.0, 0.5]), ("zero", [1.0, 1.25, 1.0, 1.5])):
        fake_eval(tmp_path / name, [0.5] * 4)
        record = json.loads((tmp_path / name / "eval.json").read_text())
        record["results"]["add-3d"]["per_problem"]["reflection"] = words
        (tmp_path / name / "eval.json").write_text(json.dumps(record))
    found = {f["claim"].split(" (")[0]: f for f in report(tmp_path)["findings"]}
    f = found["R1-Zero reflects more than the base model"]
    assert f["difference"] == pytest.approx(1.0) and f["verdict"] == "reproduced"
    assert f["interval"] == pytest.approx([1.0, 1.0])  # every problem moved by exactly 1: no spread to resample


def test_markdown_table():
    table = markdown_table(["a", "b"], [["x", 0.12345], ["y", 2]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x | 0.123 |", "| y | 2 |"]
    assert math.isclose(float(table.splitlines()[2].split("|")[2]), 0.123)


def test_interval_has_two_decimals():
    assert interval([0.12345, 0.9]) == "[0.12, 0.90]"


def test_runs_side_by_side_count_the_runs_that_reproduce_each_finding(tmp_path):
    """Two seeds' report.json: a finding both reproduce, one that only the first measured, one decided on its
    checkpoints' count instead of a difference; and each run's wall time."""
    gain = {"claim": "gain", "verdict": "reproduced", "difference": 0.25, "interval": [0.2, 0.3], "detail": ""}
    runs = {"s0": [gain, {"claim": "length", "verdict": "reversed", "difference": -11.0, "interval": [-17.5, -4.25],
                          "detail": ""}],
            "s1": [{**gain, "difference": 0.125, "interval": [0.05, 0.2]},
                   {"claim": "cons", "verdict": "within noise", "detail": "4 of 7 checkpoints: reproduced"}]}
    for i, (name, found) in enumerate(runs.items()):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps({"findings": found, "times": {"wall": 1000.0 + i}}))
    rows = [line.split(" | ") for line in across_runs([tmp_path / "s0", tmp_path / "s1"]).splitlines()[2:]]
    assert rows == [["| gain", "reproduced: +0.250 [0.20, 0.30]", "reproduced: +0.125 [0.05, 0.20]", "2 of 2 |"],
                    ["| length", "reversed: -11.000 [-17.50, -4.25]", "not measured", "0 of 2 |"],
                    ["| cons", "not measured", "within noise: 4 of 7 checkpoints: reproduced", "0 of 2 |"],
                    ["| wall time (s)", "1000", "1001", " |"]]


def test_r1_zero_is_also_judged_on_the_benchmark_the_base_finds_hardest(tmp_path):
    """The base's weakest benchmark (here linear-eq, 0.25 against add-3d's 0.75) gets its own finding: R1-Zero
    raising it, decided on that benchmark's problems alone."""
    scores = {"base": {"add-3d": [1.0, 1.0, 1.0, 0.0] * 50, "linear-eq": [1.0, 0.0, 0.0, 0.0] * 50},
              "zero": {"add-3d": [1.0] * 200, "linear-eq": [1.0, 1.0, 0.0, 0.0] * 50}}
    for name, benchmarks in scores.items():
        fake_eval(tmp_path / name, benchmarks["add-3d"])
        path = tmp_path / name / "eval.json"
        data = json.loads(path.read_text())
        fake_eval(tmp_path / "tmp", benchmarks["linear-eq"])
        data["results"]["linear-eq"] = json.loads((tmp_path / "tmp" / "eval.json").read_text())["results"]["add-3d"]
        path.write_text(json.dumps(data))
        shutil.rmtree(tmp_path / "tmp")
    found = {f["claim"]: f for f in report(tmp_path)["findings"]}
    f = found["R1-Zero raises linear-eq pass@1 over the base model"]
    assert f["verdict"] == "reproduced" and f["difference"] == pytest.approx(0.25)
    assert "R1-Zero raises add-3d pass@1 over the base model" not in found
