"""The course assignments of docs/assignments.md: one table that the handout, the student-copy maker and the
tests all read, and the maker itself.

    python -m r1mini.assignments list             # number, marker, functions of every assignment
    python -m r1mini.assignments make 5 DIR       # a copy of this repository with assignment 5 blanked

Blanking keeps each named function's signature and docstring (the contract the grading tests check) and
replaces everything after the docstring with `raise NotImplementedError(...)`. Assignment N is graded by
`pytest -m assignmentN`: that marker sits on exactly the tests of its functions, and tests/test_assignments.py
checks that each selection passes on this tree and fails on a blanked copy. To add an assignment, add a row
here, register its marker in pyproject.toml, mark its tests and describe it in docs/assignments.md; the tests
say which of these is missing.
"""
from __future__ import annotations

import argparse
import ast
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what a student copy leaves out: version control, environments, checkpoints, caches
NOT_COPIED = (".git", ".venv", "venv", "out", "__pycache__", ".pytest_cache", "*.egg-info", "build", "dist")


@dataclass(frozen=True)
class Assignment:
    number: int
    title: str
    module: str  # path from the repository root
    functions: tuple[str, ...]  # names in the module; "Class.method" for a method

    @property
    def marker(self) -> str:
        return f"assignment{self.number}"

    @property
    def command(self) -> str:
        return f"pytest -m {self.marker}"


ASSIGNMENTS = (
    Assignment(1, "group-relative advantages", "r1mini/grpo.py", ("group_advantages",)),
    Assignment(2, "the GRPO loss: clipped ratio, k3 KL, aggregation", "r1mini/grpo.py", ("grpo_loss",)),
    Assignment(3, "per-token log-probs and entropy", "r1mini/grpo.py",
               ("logprobs_from_logits", "entropy_from_logits")),
    Assignment(4, "the KV cache with left padding", "r1mini/model.py", ("KVCache.__init__", "KVCache.update")),
    Assignment(5, "temperature and top-p (nucleus) sampling", "r1mini/sampling.py",
               ("sample_next", "token_probs", "nucleus")),
    Assignment(6, "rotary position embeddings", "r1mini/model.py", ("rope_tables", "apply_rope")),
    Assignment(7, "the format reward", "r1mini/rewards.py", ("parse_completion", "format_reward")),
    Assignment(8, "the language-consistency reward", "r1mini/rewards.py",
               ("language_counts", "language_consistency")),
    Assignment(9, "pass@k (unbiased) and cons@k", "r1mini/evaluate.py", ("pass_at_k", "majority_vote")),
    Assignment(10, "the rejection-sampling filters", "r1mini/filters.py",
               ("mixed_language", "repeats", "rejection_filter")),
    Assignment(11, "the Bradley-Terry reward model", "r1mini/reward_model.py",
               ("bradley_terry_loss", "RewardModel.__init__", "RewardModel.from_policy", "RewardModel.forward")),
    Assignment(12, "auxiliary-loss-free MoE balancing", "r1mini/model.py", ("MoE.route", "MoE.update_bias")),
    Assignment(13, "MLA's absorbed decode", "r1mini/model.py", ("LatentAttention.absorbed",)),
    Assignment(14, "the multi-token-prediction loss", "r1mini/model.py", ("Transformer.mtp_losses",)),
    Assignment(15, "speculative decoding's accept / resample rule", "r1mini/sampling.py", ("accept_draft",)),
)


def get_assignment(number: int) -> Assignment:
    for a in ASSIGNMENTS:
        if a.number == number:
            return a
    raise ValueError(f"no assignment {number}; choose one of {[a.number for a in ASSIGNMENTS]}")


def find_function(tree: ast.Module, qualname: str) -> ast.FunctionDef:
    """The definition of `name` or `Class.method` at the top level of a module."""
    scope: list[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part), None)
        if node is None:
            raise ValueError(f"no {qualname} in the module (looked for {part!r})")
        scope = node.body
    if not isinstance(node, ast.FunctionDef):
        raise ValueError(f"{qualname} is a class; name its methods")
    return node


def body_span(lines: list[str], fn: ast.FunctionDef) -> tuple[int, int]:
    """First and last line (1-based) of what blanking removes: everything after the docstring, or, with no
    docstring, the whole body and the comments that open it."""
    first = fn.body[0]
    has_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
        isinstance(first.value.value, str)
    if has_docstring:
        start = first.end_lineno + 1
    else:
        start = first.lineno
        while start - 1 > fn.lineno and lines[start - 2].strip().startswith("#"):
            start -= 1
    return start, fn.end_lineno


def blank_source(source: str, functions: tuple[str, ...], message: str) -> str:
    """source with the bodies of `functions` replaced by `raise NotImplementedError(message)`."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    spans = []
    for name in functions:
        fn = find_function(tree, name)
        start, end = body_span(lines, fn)
        indent = " " * fn.body[0].col_offset
        spans.append((start, end, f"{indent}raise NotImplementedError({message.format(name=name)!r})\n"))
    for start, end, stub in sorted(spans, reverse=True):  # bottom up, so earlier line numbers stay valid
        lines[start - 1:end] = [stub]
    return "".join(lines)


def blank(root: Path, number: int) -> Path:
    """Blank assignment `number`'s functions in the tree at root, in place; returns the file changed."""
    a = get_assignment(number)
    path = Path(root) / a.module
    message = f"assignment {a.number}: write {{name}} (docs/assignments.md), then run: {a.command}"
    path.write_text(blank_source(path.read_text(), a.functions, message))
    return path


def copy_tree(dest: Path, src: Path = ROOT) -> Path:
    """The repository at src (its code, tests, docs and scripts) copied to dest, a new or empty directory."""
    if not (src / "tests").is_dir() or not (src / "pyproject.toml").is_file():
        raise ValueError(f"{src} is not a clone of the r1mini repository (no tests/ or pyproject.toml): run "
                         f"this from a clone, with the package installed from it (pip install -e .)")
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest} exists and is not empty: name a new directory for the student copy")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*NOT_COPIED), dirs_exist_ok=True)
    return dest


def make(number: int, dest: Path) -> Path:
    """A student copy: this repository at dest, assignment `number`'s functions blanked."""
    get_assignment(number)  # an unknown number fails before anything is copied
    dest = copy_tree(dest)
    blank(dest, number)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m r1mini.assignments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every assignment: number, grading command, functions")
    make_cmd = sub.add_parser("make", help="copy the repository to DIR with one assignment blanked")
    make_cmd.add_argument("number", type=int, help="the assignment's number in docs/assignments.md")
    make_cmd.add_argument("dir", type=Path, help="a new (or empty) directory for the student copy")
    args = parser.parse_args(argv)
    if args.command == "list":
        for a in ASSIGNMENTS:
            print(f"{a.number:>2}  {a.command:<22} {a.module}: {', '.join(a.functions)}")
        return
    try:  # an unknown number, or a destination that is not new: a message, not a traceback
        a = get_assignment(args.number)
        dest = make(a.number, args.dir)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    print(f"{dest}: assignment {a.number} ({a.title}); {', '.join(a.functions)} in {a.module} are blank.\n"
          f"Write them, then in {dest} run: {a.command}")


if __name__ == "__main__":
    main(sys.argv[1:])
