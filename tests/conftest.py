"""What the end-to-end script tests share: running a script as a user does (a subprocess from the repository
root, one thread), one toy base model pretrained for the tests that start from it, and one toy speedrun whose
checkpoints (bases, R1-Zero, the four R1 stages, the students) serve every test that reads them, so that each
stage is trained once per session instead of once per test file; and JSONL task files for the --tasks tests."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run_script(*args, timeout=120, cwd=ROOT) -> subprocess.CompletedProcess:
    """python SCRIPT ARGS...; from another working directory (cwd), name the script by its full path."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def start_speedrun(out: Path, SPEEDRUN_PRESET: str = "toy", root: Path = ROOT, **env_vars) -> subprocess.Popen:
    """bash speedrun.sh PRESET with OUT=out, from the repository at root (a copy, for a test that edits code),
    started; finish() waits for it."""
    env = {**ENV, "OUT": str(out), "PYTHON": sys.executable, "PYTHONPATH": str(root), **env_vars}
    return start(["bash", "speedrun.sh", SPEEDRUN_PRESET], cwd=root, env=env)


def start(command: list, **options) -> subprocess.Popen:
    """A command started in the background, what it prints going to temporary files (a pipe nobody reads
    would fill and stall it); finish() waits for it."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(command, text=True, stdout=out, stderr=err, **options)
    proc.files = (out, err)
    return proc


def finish(proc: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    proc.wait(timeout=timeout)
    out, err = proc.files
    out.seek(0)
    err.seek(0)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


def speedrun(out: Path, SPEEDRUN_PRESET: str = "toy", root: Path = ROOT, **env_vars) -> subprocess.CompletedProcess:
    return finish(start_speedrun(out, SPEEDRUN_PRESET, root, **env_vars))


# a speedrun's scripts run one thread each: the plain run puts some stages side by side (speedrun.sh's default
# on the CPU), the MoE run on the CUDA branches (test_speedrun.py) runs its stages one after the other, as on a
# GPU (SIDE_BY_SIDE=0), so that both ways are tested and the two runs together keep to about two cores
MOE_ON_CUDA_BRANCHES = dict(R1MINI_EMULATE_CUDA="1", PRETRAIN_FLAGS="--n_routed_experts 4", SIDE_BY_SIDE="0")


@pytest.fixture(scope="session")
def toy_speedruns(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """`bash speedrun.sh toy` into OUT, once per session, as "plain", and beside it the same with an MoE base on
    the CUDA branches emulated on the CPU, as "moe": (OUT, what it printed) each. OUT holds base,
    student_base, zero, r1/<stage>, student, student_zero with their evaluations, eval_teacher.json and
    eval_student.json, times.tsv and the report. Read them; a test that writes copies what it changes first."""
    root = tmp_path_factory.mktemp("speedrun")
    started = {"plain": start_speedrun(root / "plain"), "moe": start_speedrun(root / "moe", **MOE_ON_CUDA_BRANCHES)}
    return {name: (root / name, finish(proc)) for name, proc in started.items()}


@pytest.fixture(scope="session")
def toy_speedrun(toy_speedruns) -> tuple[Path, subprocess.CompletedProcess]:
    """The plain toy speedrun: (OUT, what it printed)."""
    out, r = toy_speedruns["plain"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r


@pytest.fixture(scope="session")
def toy_base(tmp_path_factory) -> Path:
    """pretrain.py --preset toy, 20 steps (a few seconds)."""
    out = tmp_path_factory.mktemp("pretrain") / "base"
    r = run_script("pretrain.py", "--preset", "toy", "--out", out, "--max_steps", 20)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def assert_same_greedy(model, prompts: list[list[int]], got: list[list[int]], want: list[list[int]],
                       tol: float = 1e-3) -> None:
    """Two decoding paths' greedy continuations are the same tokens, but for a rounding tie: where a row's
    tokens first differ, the two tokens' logits (a plain float32 forward of the prefix) must lie within tol,
    a difference of rounding that another CPU's kernels may resolve the other way. A wrong cache, mask or
    position parts the paths at tokens whose logits are far apart (the scaled-up test models' gaps are
    ~1; float32 paths differ by ~1e-5, bf16 ones by ~1e-2)."""
    import torch
    assert len(got) == len(want) == len(prompts)
    training = model.training
    model.eval()
    for p, g, w in zip(prompts, got, want):
        k = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), None)
        if k is None:
            assert len(g) == len(w), (p, g, w)
            continue
        with torch.no_grad():
            logits = model(torch.tensor([p + w[:k]], device=next(model.parameters()).device))[0, -1].float()
        gap = (logits[w[k]] - logits[g[k]]).abs().item()
        assert gap < tol, f"prompt {p}: the paths part at token {k} ({w[k]}, {g[k]}), logits {gap:.3g} apart"
    model.train(training)


# -- JSONL task files (--tasks) ----------------------------------------------------------------------------------

def task_file(path: Path, questions, **fields) -> Path:
    """A JSONL task file of these questions (answer 7, the number checker), with `fields` on every line."""
    path.write_text("".join(json.dumps({"question": q, "answer": "7", "checker": "number", **fields},
                                       ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    return path


def questions_in(splits: set, n: int, template: str = "What is {} + 0?") -> list[str]:
    """n questions whose hash puts them in one of `splits` (r1mini.tasks.split_of, as FileTask splits a file)."""
    from r1mini.tasks import split_of
    return [q for q in (template.format(i) for i in range(10_000)) if split_of("jsonl", q) in splits][:n]
