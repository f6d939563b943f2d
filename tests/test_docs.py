"""The course assignments point at code and tests that exist."""

import importlib
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assignment_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "assignments.md").read_text()
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if re.match(r"\| \d+ \|", line)]


def test_every_assignment_names_existing_code_and_tests():
    rows = assignment_rows()
    assert len(rows) >= 7
    for number, _, where, _, graded in rows:
        # where: `name`, `name` in `r1mini/module.py`, ...
        module = re.search(r"`(r1mini/\w+)\.py`", where).group(1).replace("/", ".")
        mod = importlib.import_module(module)
        for name in re.findall(r"`([\w.]+)`", where.split(" in `")[0]):
            obj = mod
            for part in name.split("."):
                assert hasattr(obj, part), f"assignment {number}: {module} has no {name}"
                obj = getattr(obj, part)
        # graded by: pytest FILES [-k EXPR]; every keyword of EXPR matches a test in FILES
        args = shlex.split(graded.strip("`"))
        assert args[0] == "pytest"
        files = [a for a in args[1:] if a.endswith(".py")]
        names = [n for f in files for n in re.findall(r"^def (test_\w+)", (ROOT / f).read_text(), re.M)]
        assert names, f"assignment {number}: no tests in {files}"
        if "-k" in args:
            words = [w for w in re.findall(r"\w+", args[args.index("-k") + 1]) if w not in ("and", "or", "not")]
            for w in words:
                assert any(w in n for n in names), f"assignment {number}: -k {w!r} selects nothing in {files}"


def test_readme_results_are_the_reports():
    """The README's results come from docs/speedrun_cpu_report.md, the report of the run they describe: the
    table row for row, every three-decimal figure of the findings, and the stage times."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    report = (ROOT / "docs" / "speedrun_cpu_report.md").read_text(encoding="utf-8")
    results = readme[readme.index("## Results"):readme.index("**The same command on another machine")]
    def table(text):
        return [line for line in text.splitlines() if line.startswith("| ") and "|---" not in line]
    assert table(results) == table(report)[:len(table(results))] and len(table(results)) == 9
    findings = results[results.index("The paper's findings"):results.index("Wall time per stage")]
    figures = set(re.findall(r"\b\d\.\d{3}\b", findings))
    assert len(figures) >= 8 and figures <= set(re.findall(r"\b\d\.\d{3}\b", report))
    times = dict(re.findall(r"\| (\w+) \| (\d+) \|", report))
    words = {"pretraining": "pretrain", "the student's base": "pretrain_student", "R1-Zero": "r1_zero",
             "the four R1 stages": "r1", "distillation": "distill", "the RL-only student": "student_rl_only",
             "evaluation of 8 checkpoints": "eval"}
    said = dict(re.findall(r"([\w\-' 148]+?) (\d+) s[,.]", results[results.index("Wall time per stage:"):]))
    assert {words[k.strip()]: v for k, v in said.items()} == {v: times[v] for v in words.values()}


def test_readme_vocabulary_is_the_cpu_presets():
    """768 BPE ranks (pretrain.py's cpu preset) plus the chat special tokens."""
    from pretrain import PRESETS, PretrainConfig
    from r1mini.tokenizer import SPECIAL_TOKENS
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ranks = PRESETS["cpu"].get("vocab_size", PretrainConfig.vocab_size)
    assert f"vocabulary {ranks + len(SPECIAL_TOKENS)})" in readme
