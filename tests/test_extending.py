"""docs/extending.md's recipes, run as written: the code blocks are taken from the page itself, so a change
that breaks a recipe fails here."""
import json
import re

from conftest import ROOT, run_script

GUIDE = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.S)


def test_your_own_reward(toy_base, tmp_path):
    module = code_blocks("python")[0]
    name = re.match(r"# (\w+)\.py", module).group(1)
    (tmp_path / f"{name}.py").write_text(module)
    command = code_blocks("bash")[0].split()
    assert command[:2] == ["python", "train_zero.py"] and "--reward" in command
    out = tmp_path / "zero"
    r = run_script(ROOT / command[1], *command[2:], "--init", toy_base, "--out", out, "--steps", 2,
                   "--eval_every", 100, cwd=tmp_path)  # from the folder that holds the module, as the page says
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [row for row in rows if "reward" in row]
    assert len(steps) == 2
    for row in steps:  # the reward is the sum of its parts: the function named on the command line ran
        assert row["brevity"] < 0
        assert abs(row["reward"] - (row["accuracy"] + row["format"] + row["brevity"])) < 1e-3


def test_a_reward_that_is_not_there_is_named(toy_base, tmp_path):
    r = run_script(ROOT / "train_zero.py", "--preset", "toy", "--init", toy_base, "--out", tmp_path / "z",
                   "--reward", "no_such_module:f", cwd=tmp_path)
    assert r.returncode == 1 and "--reward no_such_module:f: no module 'no_such_module'" in r.stderr
    r = run_script(ROOT / "train_zero.py", "--preset", "toy", "--reward", "just_a_name", cwd=tmp_path)
    assert r.returncode == 1 and "--reward must be '' or module:function" in r.stderr
