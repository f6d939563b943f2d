"""The docs: every link of the README and docs/ resolves, and the README links every page; the course
handout, docs/assignments.md, describes the assignments of r1mini/assignments.py: the same numbers, titles,
functions, modules and grading commands, and for each a note that says what to delete and the classic
mistake. (tests/test_assignments.py checks the table against the code and the tests.)"""

import re
from pathlib import Path

from r1mini.assignments import ASSIGNMENTS

ROOT = Path(__file__).resolve().parents[1]
HANDOUT = (ROOT / "docs" / "assignments.md").read_text()


def test_handout_table_is_the_assignments_table():
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in HANDOUT.splitlines()
            if re.match(r"\| \d+ \|", line)]
    described = []
    for number, title, where, _, graded in rows:
        names, module = where.split(" in ")  # `name`, `Class.method` in `r1mini/module.py`
        described.append((int(number), title, tuple(re.findall(r"`([\w.]+)`", names)), module.strip("`"),
                          graded.strip("`")))
    assert described == [(a.number, a.title, a.functions, a.module, a.command) for a in ASSIGNMENTS]


def test_handout_notes_say_what_to_delete_and_the_classic_mistake():
    notes = HANDOUT.split("## Notes for each")[1]
    parts = re.split(r"^\s*(\d+)\. \*\*", notes, flags=re.M)[1:]
    by_number = dict(zip(map(int, parts[::2]), parts[1::2]))
    assert sorted(by_number) == [a.number for a in ASSIGNMENTS]
    for a in ASSIGNMENTS:
        note = by_number[a.number]
        delete = note.split("*Delete:*")[1].split("*Classic mistake:*")[0]
        assert set(a.functions) <= set(re.findall(r"`([\w.]+)`", delete)), a.number
        assert len(note.split("*Classic mistake:*")[1].strip()) > 20, a.number
    assert "python -m r1mini.assignments make 5 DIR" in HANDOUT


LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_relative_link_of_the_readme_and_docs_resolves():
    """A page moved or renamed leaves no dangling link behind (web links are not followed)."""
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = [f"{page.relative_to(ROOT)}: {target}" for page in pages
              for target in LINK.findall(page.read_text(encoding="utf-8"))
              if "://" not in target and not (page.parent / target).exists()]
    assert len(pages) > 8 and not broken, broken


def test_the_readme_links_every_page_of_docs():
    """The README is the way in: every page of docs/ (the runs' measurements aside) is one link away."""
    linked = set(LINK.findall((ROOT / "README.md").read_text(encoding="utf-8")))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if not p.name.startswith("speedrun_cpu_")}
    assert pages >= {"docs/results.md", "docs/gpu.md", "docs/your_model.md", "docs/errors.md",
                     "docs/assignments.md", "docs/extending.md"} and pages <= linked, pages - linked
