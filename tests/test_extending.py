"""docs/extending.md's recipes, run as written: the code blocks are taken from the page itself, so a change
that breaks a recipe fails here."""
import json
import re
import shutil

from conftest import ROOT, run_script

GUIDE = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.S)


def write_module(name: str, folder) -> None:
    """The page's `# NAME.py` code block, written to folder/NAME.py."""
    [module] = [b for b in code_blocks("python") if b.startswith(f"# {name}.py\n")]
    (folder / f"{name}.py").write_text(module, encoding="utf-8")


def commands(flag: str) -> list[list[str]]:
    """The command lines of the page's bash block that uses flag."""
    [block] = [b for b in code_blocks("bash") if flag in b]
    return [line.split("#")[0].split() for line in block.splitlines() if line.strip()]


def run_command(command: list[str], *extra, cwd) -> None:
    """python SCRIPT ARGS... as the page writes it, run from cwd, with extra flags to keep it short."""
    assert command[0] == "python"
    r = run_script(ROOT / command[1], *command[2:], *extra, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_your_own_reward(toy_base, tmp_path):
    write_module("my_rewards", tmp_path)
    [command] = commands("--reward")
    assert command[:2] == ["python", "train_zero.py"]
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


def test_your_own_task(tmp_path):
    """The page's subtraction task through pretraining, R1-Zero and the evaluation, each run as written (a
    few steps each), from the folder that holds my_tasks.py."""
    write_module("my_tasks", tmp_path)
    pretrain, zero, evaluate = commands("--suite")
    with_out = lambda c: [str(tmp_path / a) if a.startswith("out/") else a for a in c]  # noqa: E731
    run_command(with_out(pretrain), "--max_steps", 10, cwd=tmp_path)
    run_command(with_out(zero), "--steps", 1, "--eval_every", 100, cwd=tmp_path)
    run_command(with_out(evaluate), "--n_problems", 2, "--k", 1, cwd=tmp_path)
    base, zero_dir = tmp_path / "out/toy/sub_base", tmp_path / "out/toy/sub_zero"
    assert json.loads((base / "meta.json").read_text())["config"]["suite"] == "my_tasks:SUITE"
    assert json.loads((zero_dir / "meta.json").read_text())["config"]["suite"] == "my_tasks:SUITE"
    rows = [json.loads(line) for line in (zero_dir / "samples.jsonl").read_text().splitlines()]
    assert rows and all(re.fullmatch(r"What is (\d+) - (\d+)\?", r["question"]) for r in rows)
    assert list(json.loads((zero_dir / "eval.json").read_text())["results"]) == ["sub"]


def test_the_task_writes_right_solutions_and_checks_answers(tmp_path, monkeypatch):
    import random
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module("my_tasks", tmp_path)
    from r1mini.rewards import accuracy_reward
    from r1mini.tasks import TASKS, suite
    monkeypatch.chdir(tmp_path)
    before = dict(TASKS)
    SUITE = suite("my_tasks:SUITE")  # as the scripts load it; its problems carry the task that checks them
    assert TASKS == before  # and no global table changed
    task, rng = SUITE["sub"], random.Random(0)
    for _ in range(50):
        p = task.sample(rng, "test", "en")
        a, b = map(int, re.fullmatch(r"What is (\d+) - (\d+)\?", p.question).groups())
        assert p.answer == str(a - b) and task.check(f" {a - b} ", p) and not task.check(str(a - b + 1), p)
        assert accuracy_reward(f"<think>.</think><answer>{a - b}</answer>", p) == 1.0  # the reward checks it
        assert task.solution(p, "steps", "en", rng)[1] == p.answer == task.solution(p, "reflect", "zh", rng)[1]
        assert task.solution(p, "wrong", "en", rng)[1] == str(a - b + 1)
        ((confirm, _),), agrees = task.check_steps(p.data, p.answer, rng)
        ((catch, _),), caught = task.check_steps(p.data, str(a - b + 1), rng)
        assert "Right" in confirm and agrees and "not" in catch and not caught
        text, answer = task.solution(p, "reflect", "en", rng)  # a slipped first pass is caught and redone
        assert answer == p.answer and "Check" in text


def test_a_grpo_variant(toy_base, tmp_path, monkeypatch):
    """The page's aggregation: its loss against a hand computation, then R1-Zero run with it as written."""
    import torch
    from r1mini.grpo import AGGREGATIONS, grpo_loss
    from r1mini.rl import GRPOConfig
    monkeypatch.chdir(tmp_path)  # where import_named looks first, as from the command line
    write_module("my_grpo", tmp_path)
    [command] = commands("--agg")
    spec = command[command.index("--agg") + 1]
    cfg = GRPOConfig(agg=spec)
    assert cfg.agg == spec and spec not in AGGREGATIONS  # imported, not added to the table
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    logp = torch.zeros(3, 4)
    loss, _ = grpo_loss(logp, logp, None, torch.tensor([1.0, -2.0, 5.0]), mask, agg=cfg.aggregation())
    assert loss.item() == -(1.0 * 3 + -2.0 * 1) / 2  # on-policy, objective = A per token: summed per
    # completion, averaged over the 2 completions with tokens
    out = tmp_path / "zero"
    run_command(command, "--init", toy_base, "--out", out, "--steps", 2, "--eval_every", 100, cwd=tmp_path)
    assert json.loads((out / "meta.json").read_text())["config"]["agg"] == spec


def test_a_config_field(tmp_path, monkeypatch, capsys):
    """The page's config: --help shows the comments and rules, its rules take a negative penalty and refuse a
    share above 1, and without the RULES entry for warmup_steps its default fails with the page's message."""
    import pytest
    from r1mini.config import ConfigError, parse_config
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module("my_config", tmp_path)
    from my_config import MyConfig
    cfg, _ = parse_config(MyConfig, {"cpu": {}}, "doc", ["--length_penalty", "-0.01", "--warmup_steps", "0"])
    assert (cfg.length_penalty, cfg.warmup_steps, cfg.keep_share) == (-0.01, 0, 1.0)
    with pytest.raises(SystemExit, match=r"--keep_share must be in \[0, 1\], got 1.5"):
        parse_config(MyConfig, {"cpu": {}}, "doc", ["--keep_share", "1.5"])
    with pytest.raises(SystemExit):
        parse_config(MyConfig, {"cpu": {}}, "doc", ["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "steps of linear learning-rate warm-up; 0 for none (default 0; >= 0)" in help_text
    assert "< 0 rewards length (default 0.0; any number)" in help_text

    source = (tmp_path / "my_config.py").read_text()
    without, n = re.subn(r'"warmup_steps": NON_NEGATIVE,\s*', "", source)
    assert n == 1
    (tmp_path / "no_rule.py").write_text(without)
    from no_rule import MyConfig as WithoutTheRule
    quoted = re.search(r"`(warmup_steps must be > 0, got 0 \(its default;.*?\))`", GUIDE, flags=re.S).group(1)
    with pytest.raises(ConfigError) as e:
        WithoutTheRule()
    assert str(e.value) == " ".join(quoted.split())


def test_your_own_problems_as_a_jsonl_file(toy_base, tmp_path):
    """The page's JSONL lines, evaluated by the page's command: each line is one benchmark problem, checked."""
    [lines] = code_blocks("jsonl")
    [command] = commands("--tasks")
    name = command[command.index("--tasks") + 1]
    (tmp_path / name).write_text(lines, encoding="utf-8")
    base = tmp_path / "base"
    shutil.copytree(toy_base, base)  # eval.py writes eval.json into the checkpoint: not into the shared one
    command = [str(base) if a == "out/toy/base" else a for a in command]
    run_command(command, "--k", 1, "--n_problems", 3, "--show", 0, cwd=tmp_path)
    record = json.loads((base / "eval.json").read_text())
    [result] = record["results"].values()
    assert len(result["problems"]) == 3 and 0.0 <= result["pass@1"] <= 1.0
