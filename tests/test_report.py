"""The report's verdicts, on evaluations made up so that the answer is known: a clear gain is reproduced,
no difference is within noise, a loss is reversed; the numbers in the table are the evaluations'."""
import json
import random

import pytest

from r1mini.report import report, verdict


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
