"""Tests for r1mini.jsonl: data files round-trip (UTF-8, blank lines), a malformed line is named, and the
training log forgets the rows of steps that will run again on resume."""

import pytest

from r1mini.jsonl import JsonlLogger, read_jsonl, write_jsonl


def test_jsonl_round_trip(tmp_path):
    rows = [{"q": "计算 12 + 7。", "a": 19}, {"nested": {"x": [1, 2.5, None, True]}, "emoji": "🙂"}, {}]
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, rows[:2])
    write_jsonl(path, rows[2:], append=True)
    assert read_jsonl(path) == rows
    assert "计算" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n   \n")  # blank lines are skipped
    assert read_jsonl(path) == rows


def test_read_jsonl_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": oops}\n{"d": 4}\n', encoding="utf-8")
    with pytest.raises(ValueError) as e:
        read_jsonl(path)
    assert "bad.jsonl" in str(e.value) and "line 3" in str(e.value)
    path.write_text('{"a": 1}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError) as e:
        read_jsonl(path)
    assert "bad.jsonl" in str(e.value) and "line 3" in str(e.value) and "object" in str(e.value)
    path.write_text('"just a string"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        read_jsonl(path)


def test_logger_drop_after(tmp_path):
    logger = JsonlLogger(tmp_path / "log.jsonl")
    for step in range(1, 6):
        logger.log({"step": step, "loss": 1.0 / step})
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # the run was killed mid-write
    logger.drop_after(3)
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [1, 2, 3]
    logger.log({"step": 4})
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [1, 2, 3, 4]


def test_logger_drop_after_only_touches_the_matching_rows(tmp_path):
    """train_r1's stages share one log: resuming final_rl from step 1 forgets final_rl's later rows only; a
    fresh start (step -1) forgets every matching row, and rows without a step (evaluations) stay."""
    logger = JsonlLogger(tmp_path / "log.jsonl")
    for stage in ("reasoning_rl", "final_rl"):
        for step in (1, 2, 3):
            logger.log({"stage": stage, "step": step})
    logger.log({"stage": "final_rl", "eval": 0.5})
    logger.drop_after(1, stage="final_rl")
    kept = [(r["stage"], r.get("step")) for r in read_jsonl(tmp_path / "log.jsonl")]
    assert kept == [("reasoning_rl", 1), ("reasoning_rl", 2), ("reasoning_rl", 3), ("final_rl", 1), ("final_rl", None)]
    assert all(r["time"] >= 0 for r in read_jsonl(tmp_path / "log.jsonl"))  # every row is timed
    logger.drop_after(-1, stage="reasoning_rl")
    kept = [(r["stage"], r.get("step")) for r in read_jsonl(tmp_path / "log.jsonl")]
    assert kept == [("final_rl", 1), ("final_rl", None)]


def test_json_is_strict_nan_is_null(tmp_path):
    """Python writes a bare NaN, which strict parsers reject; ours writes null, everywhere it writes JSON."""
    import json
    from r1mini.files import atomic_write_json
    from r1mini.jsonl import JsonlLogger, dumps

    def strict(text):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"not JSON: {c}")))
    row = {"acc": float("nan"), "loss": [1.0, float("inf"), -float("inf")], "n": 3, "nested": {"x": float("nan")}}
    assert strict(dumps(row)) == {"acc": None, "loss": [1.0, None, None], "n": 3, "nested": {"x": None}}
    atomic_write_json(row, tmp_path / "r.json")
    write_jsonl(tmp_path / "r.jsonl", [row])
    JsonlLogger(tmp_path / "log.jsonl").log(row)
    assert strict((tmp_path / "r.json").read_text())["acc"] is None
    assert strict((tmp_path / "r.jsonl").read_text())["loss"] == [1.0, None, None]
    assert strict((tmp_path / "log.jsonl").read_text())["nested"] == {"x": None}
    with pytest.raises(ValueError, match="not JSON: NaN"):
        strict(json.dumps(row))  # what the standard library would have written
