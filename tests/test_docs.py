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
