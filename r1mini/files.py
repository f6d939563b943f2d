"""Files written whole or not at all: each goes to a temporary file beside its destination, which then
replaces it, so a kill at any moment leaves either the old file or the new one, never half of one. Every
checkpoint file, the tokenizer, evaluation results and sampled data sets are written this way."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from r1mini.jsonl import dumps


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """write(tmp) fills a temporary file in path's directory, which then replaces path (os.replace is atomic
    on one file system); the temporary file is removed if write fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it readable by its owner only; what we save is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(text: str, path: str | Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(obj, path: str | Path) -> None:
    """obj as indented, strict JSON (a NaN is written null: jsonl.dumps)."""
    atomic_write_text(dumps(obj, indent=2), path)


def atomic_save(obj, path: str | Path) -> None:
    """torch.save, atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
