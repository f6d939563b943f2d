"""What the end-to-end script tests share: running a script as a user does (a subprocess from the repository
root, one thread), and one toy base model pretrained for the tests that start from it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run_script(*args, timeout=120, cwd=ROOT) -> subprocess.CompletedProcess:
    """python SCRIPT ARGS...; from another working directory (cwd), name the script by its full path."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def toy_base(tmp_path_factory) -> Path:
    """pretrain.py --preset toy, 20 steps (a few seconds)."""
    out = tmp_path_factory.mktemp("pretrain") / "base"
    r = run_script("pretrain.py", "--preset", "toy", "--out", out, "--max_steps", 20)
    assert r.returncode == 0, r.stdout + r.stderr
    return out
