"""Tests for r1mini.assignments: the table agrees with pyproject's markers and with the code; blanking keeps
each signature and docstring and removes the rest; a student copy holds the tree with one assignment
blanked; and every grading selection passes on this tree and fails on a copy with its assignment blanked.
(tests/test_docs.py checks that docs/assignments.md describes the same table.)"""

import ast
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from r1mini.assignments import (ASSIGNMENTS, blank, blank_source, copy_tree, find_function, get_assignment, main,
                                make)

ROOT = Path(__file__).resolve().parents[1]


def marked_files(marker: str, root: Path = ROOT) -> list[str]:
    """The test files that use a marker (assignment1 is not assignment12)."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py")
                  if re.search(rf"pytest\.mark\.{marker}\b", p.read_text()))


def test_table_numbers_markers_and_functions():
    assert [a.number for a in ASSIGNMENTS] == list(range(1, len(ASSIGNMENTS) + 1))
    registered = re.findall(r'^\s*"(assignment\d+):', (ROOT / "pyproject.toml").read_text(), re.M)
    assert registered == [a.marker for a in ASSIGNMENTS], "register each assignment's marker in pyproject.toml"
    for a in ASSIGNMENTS:
        assert a.command == f"pytest -m assignment{a.number}"
        assert marked_files(a.marker), f"no test is marked {a.marker}"
        tree = ast.parse((ROOT / a.module).read_text())
        for name in a.functions:
            assert ast.get_docstring(find_function(tree, name)) or name.endswith("__init__"), \
                f"{name} needs a docstring: blanking keeps it as the student's contract"
    with pytest.raises(ValueError, match="no assignment 99"):
        get_assignment(99)


SOURCE = '''\
import torch


def plain(x):
    """What plain does.

    More of the contract."""
    # a hint the student should not see
    y = x + 1
    return y


class Box:
    """A box."""

    def __init__(self, n):
        # not shown either
        self.n = n

    @torch.no_grad()
    def grow(self, k: int,
             by: int = 1) -> int:
        """Grow."""
        return self.n + k * by
'''


def test_blank_source_keeps_signatures_and_docstrings():
    got = blank_source(SOURCE, ("plain", "Box.__init__", "Box.grow"), "write {name}")
    want = SOURCE.replace('''    # a hint the student should not see
    y = x + 1
    return y
''', '''    raise NotImplementedError('write plain')
''').replace('''        # not shown either
        self.n = n
''', '''        raise NotImplementedError('write Box.__init__')
''').replace('''        return self.n + k * by
''', '''        raise NotImplementedError('write Box.grow')
''')
    assert got == want
    assert blank_source(SOURCE, ("Box.grow",), "x").count("NotImplementedError") == 1  # one at a time
    with pytest.raises(ValueError, match="Box.shrink"):
        blank_source(SOURCE, ("Box.shrink",), "x")
    with pytest.raises(ValueError, match="class"):
        blank_source(SOURCE, ("Box",), "x")


def test_make_copies_the_tree_with_one_assignment_blanked(tmp_path):
    dest = make(5, tmp_path / "student")
    a = get_assignment(5)
    for rel in ("pyproject.toml", "tests/test_sampling.py", "r1mini/model.py", "docs/assignments.md"):
        assert (dest / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    assert not (dest / ".git").exists() and not list(dest.rglob("__pycache__"))
    blanked = (dest / a.module).read_text()
    fn = find_function(ast.parse(blanked), "sample_next")
    original = find_function(ast.parse((ROOT / a.module).read_text()), "sample_next")
    assert ast.get_docstring(fn) == ast.get_docstring(original)
    assert ast.unparse(fn.args) == ast.unparse(original.args)
    assert textwrap.dedent(ast.unparse(fn.body[1])).startswith("raise NotImplementedError('assignment 5: write")
    assert len(fn.body) == 2
    with pytest.raises(ValueError, match="not empty"):
        make(5, dest)
    with pytest.raises(SystemExit, match="not empty"):  # the command line: a message
        main(["make", "5", str(dest)])


def test_command_line(tmp_path, capsys):
    main(["list"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(ASSIGNMENTS) and "pytest -m assignment5" in lines[4] and "sample_next" in lines[4]
    with pytest.raises(SystemExit, match="no assignment 99"):
        main(["make", "99", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()  # nothing copied for an unknown number
    main(["make", "9", str(tmp_path / "nine")])
    assert "pytest -m assignment9" in capsys.readouterr().out
    blanked = (tmp_path / "nine" / "r1mini" / "evaluate.py").read_text()
    assert "raise NotImplementedError('assignment 9: write majority_vote" in blanked
    with pytest.raises(ValueError, match="not a clone"):
        copy_tree(tmp_path / "other", src=tmp_path / "nine" / "r1mini")


def run_selection(root: Path, *markers: str) -> subprocess.CompletedProcess:
    """pytest -m "MARKER or ..." on the tree at root (its package, its tests), stopping at the first failure.
    Only the files that use a marker are collected: the same tests as the student's command, without
    importing the rest of the suite."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    files = sorted({f for m in markers for f in marked_files(m, root)})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "-m", " or ".join(markers), *files], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_each_grading_selection_passes_here_and_fails_when_blanked(tmp_path):
    """Two copies of the tree; in each, half of the assignments in turn are blanked, graded and restored, the
    two halves side by side (each pytest runs one thread: two cores take the two)."""
    r = run_selection(ROOT, *(a.marker for a in ASSIGNMENTS))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    def grade_blanked(copy: Path, assignments) -> list:
        graded = []
        for a in assignments:
            original = (copy / a.module).read_text()
            blank(copy, a.number)
            graded.append((a, run_selection(copy, a.marker)))
            (copy / a.module).write_text(original)
        return graded
    copies = [copy_tree(tmp_path / f"copy{i}") for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        halves = pool.map(grade_blanked, copies, [ASSIGNMENTS[::2], ASSIGNMENTS[1::2]])
        graded = [pair for half in halves for pair in half]
    assert sorted(a.number for a, _ in graded) == [a.number for a in ASSIGNMENTS]
    for a, r in graded:
        # 1: tests ran and failed (not 5: nothing selected, nor 2: an error before any test ran)
        assert r.returncode == 1 and f"assignment {a.number}: write" in r.stdout, (a.number, r.stdout[-3000:])
