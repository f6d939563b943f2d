"""JSONL files: one JSON object per line. Data sets in and out (with errors that name the bad line), and
the append-only training logs (log.jsonl, samples.jsonl) that a notebook or a plot reads."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from r1mini.config import UserError
from r1mini.distributed import is_main


def dumps(obj, **kwargs) -> str:
    """json.dumps, strict: a NaN or an infinity (an undefined mean, a loss that blew up) is written null, as
    strict JSON parsers require, instead of Python's bare NaN."""
    return json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, **kwargs)


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_jsonl(path: str | Path, rows, append: bool = False) -> None:
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for row in rows:
            f.write(dumps(row) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; a malformed line raises UserError (a ValueError) naming the file and the line."""
    return [row for _, row in numbered_rows(path)]


def numbered_rows(path: str | Path):
    """(line number, row) of each non-blank line of a JSONL file, for errors that name the line of a bad
    field; a line that is not a JSON object raises UserError naming the file and the line."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                raise UserError(f"{path}, line {n}: not UTF-8 text; fix or delete that line") from None
            except json.JSONDecodeError as e:
                raise UserError(f"{path}, line {n}: not valid JSON ({e.msg}); fix or delete that line") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}, line {n}: expected a JSON object, got {type(row).__name__}")
            yield n, row


class JsonlLogger:
    """Appends one JSON object per line to a log file, with the seconds since the logger was made (rank 0
    only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.start = time.time()

    def log(self, row: dict) -> None:
        if is_main():
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(dumps({**row, "time": round(time.time() - self.start, 2)}) + "\n")

    def drop_after(self, step: int, **match) -> None:
        """On resume: forget the rows logged after the checkpoint's step, since those steps run again (only the
        rows whose fields equal `match`, e.g. stage="final_rl", when several loops share the log); step -1
        (a fresh start) forgets them all."""
        if not is_main() or not self.path.exists():
            return

        def keep(line: str) -> bool:
            try:
                row = json.loads(line)
            except ValueError:  # a line cut short when the run was killed
                return False
            return row.get("step", -1) <= step or any(row.get(k) != v for k, v in match.items())
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        self.path.write_text("".join(line for line in lines if line.strip() and keep(line)), encoding="utf-8")
