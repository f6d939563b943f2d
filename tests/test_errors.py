"""Every failure a user can cause ends in a message that says what to do and a non-zero exit, and loses
nothing: bad flags, missing or mismatched checkpoints, damaged files, NaN losses, CUDA out of memory."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import distill  # noqa: E402
import eval as eval_script  # noqa: E402
import pretrain  # noqa: E402
import train_r1  # noqa: E402
import train_zero  # noqa: E402
import r1mini.rl  # noqa: E402
import r1mini.stage  # noqa: E402
from r1mini.checkpoint import load_checkpoint, load_train_state  # noqa: E402
from r1mini.config import UserError, parse_config  # noqa: E402
from r1mini.jsonl import read_jsonl  # noqa: E402
from r1mini.model import Transformer, model_config  # noqa: E402
from r1mini.sft import train_sft  # noqa: E402

SCRIPTS = {"pretrain": pretrain, "train_zero": train_zero, "train_r1": train_r1, "eval": eval_script,
           "distill": distill}
CONFIGS = {"pretrain": pretrain.PretrainConfig, "train_zero": train_zero.ZeroConfig, "train_r1": train_r1.R1Config,
           "eval": eval_script.EvalConfig, "distill": distill.DistillConfig}
SMALL = ["--train_docs", "300", "--val_docs", "60", "--tokenizer_docs", "200"]


def exit_message(script: str, argv: list) -> str:
    with pytest.raises(SystemExit) as e:
        SCRIPTS[script].main(["--preset", "toy", "--device", "cpu", *map(str, argv)])
    assert e.value.code not in (0, None), "a failure must exit non-zero"
    return str(e.value.code)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("errors") / "base"
    pretrain.main(["--preset", "toy", "--device", "cpu", "--out", str(out), *SMALL, "--max_steps", "6",
                   "--ckpt_every", "3"])
    return out


# -- flags -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_every_preset_passes_the_checks(script):
    for preset in SCRIPTS[script].PRESETS:
        parse_config(CONFIGS[script], SCRIPTS[script].PRESETS, "", ["--preset", preset])


@pytest.mark.parametrize("script, argv, expected", [
    ("pretrain", ["--batch_size", 0], "--batch_size must be > 0, got 0"),
    ("pretrain", ["--max_steps", -5], "--max_steps must be > 0"),
    ("pretrain", ["--lr", "nan"], "--lr must be a finite number"),
    ("pretrain", ["--lr", 0], "--lr must be > 0"),
    ("pretrain", ["--min_lr_ratio", 2], "--min_lr_ratio must be in [0, 1]"),
    ("pretrain", ["--suite", "nope"], "--suite must be one of toy, cpu, gpu, or module:name, got 'nope'"),
    ("pretrain", ["--model", "huge"], "--model must be one of"),
    ("train_zero", ["--top_p", 0], "--top_p must be in (0, 1]"),
    ("distill", ["--samples", 0], "--samples must be > 0"),
    ("distill", ["--reasoning_ratio", 0], "--reasoning_ratio must be > 0"),
    ("train_zero", ["--top_p", 1.5], "--top_p must be in (0, 1]"),
    ("train_zero", ["--temperature", -0.1], "--temperature must be >= 0"),
    ("train_zero", ["--group_size", -2], "--group_size must be > 0"),
    ("train_zero", ["--agg", "sum"], "--agg must be one of 'seq-mean', 'token-mean', 'constant', or module:name"),
    ("train_zero", ["--zh_share", 1.5], "--zh_share must be in [0, 1]"),
    ("train_zero", ["--kl_coef", "inf"], "--kl_coef must be a finite number"),
    ("train_r1", ["--stage", "nope"], "--stage must be all or one of"),
    ("train_r1", ["--lr", 0], "--lr must be > 0"),  # GRPO's learning rate (the flag was --rl_lr)
    ("eval", ["--k", 0], "--k must be > 0"),
    ("eval", ["--langs", "en,fr"], "--langs must be a comma-separated list of en, zh"),
    ("eval", ["--chat", "maybe"], "--chat must be one of"),
])
def test_bad_flag_values_name_the_flag(script, argv, expected, tmp_path):
    assert expected in exit_message(script, ["--out", tmp_path / "out", *argv])
    assert not (tmp_path / "out").exists()  # stopped before doing anything


def test_unparsable_flag_and_unknown_preset(capsys):
    with pytest.raises(SystemExit) as e:
        pretrain.main(["--batch_size", "eight"])
    assert e.value.code == 2 and "invalid int value: 'eight'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown preset 'huge'; choose one of toy, cpu, gpu"):
        pretrain.main(["--preset", "huge"])


# -- checkpoints -----------------------------------------------------------------------------------------

def test_resuming_with_another_model_is_refused(base, tmp_path):
    out = tmp_path / "base"
    shutil.copytree(base, out)
    msg = exit_message("pretrain", ["--out", out, *SMALL, "--model", "toy-student"])
    assert msg.startswith(f"{out} holds a run of another model") and "or write the new run elsewhere" in msg
    assert json.loads((out / "meta.json").read_text())["step"] == 6  # the run in out/ is untouched


def test_missing_checkpoint_names_the_script_that_makes_it(tmp_path):
    assert "run pretrain.py first" in exit_message("train_zero", ["--init", tmp_path / "none", "--out", tmp_path / "z"])
    assert "run train_zero.py first" in exit_message("train_r1", ["--init", tmp_path / "none", "--out", tmp_path / "r"])
    message = exit_message("eval", ["--init", tmp_path / "none"])
    assert "start from a checkpoint directory that an earlier stage wrote" in message


def test_checkpoint_of_the_wrong_stage(base, tmp_path):
    msg = exit_message("train_r1", ["--init", base, "--out", tmp_path / "r1"])
    assert f"{base} holds a 'base' checkpoint, expected 'zero'" in msg


def test_tokenizer_and_model_from_different_runs(base, tmp_path):
    bad = tmp_path / "base"
    shutil.copytree(base, bad)
    cfg = json.loads((bad / "model.json").read_text())
    (bad / "model.json").write_text(json.dumps({**cfg, "vocab_size": cfg["vocab_size"] + 1}))
    with pytest.raises(UserError, match="tokenizer has .* tokens but the model expects"):
        load_checkpoint(bad)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_weights_or_train_state(base, tmp_path, damage):
    bad = tmp_path / "base"
    shutil.copytree(base, bad)
    for f in ("model.pt", "train_state.pt"):
        data = (bad / f).read_bytes()
        (bad / f).write_bytes(data[:len(data) // 2] if damage == "truncate" else b"not a checkpoint\n" * 10)
    with pytest.raises(UserError, match="cannot read .*model.pt .*delete it and rerun"):
        load_checkpoint(bad)
    # rerunning the pretraining to resume it reads train_state.pt: the same kind of message
    assert "train_state.pt" in exit_message("pretrain", ["--out", bad, *SMALL, "--max_steps", 9])


# -- NaN and out of memory -------------------------------------------------------------------------------

def finite_and_loadable(out: Path, step: int) -> None:
    model, _, meta = load_checkpoint(out)
    assert meta["step"] == step and load_train_state(out)["step"] == step
    assert all(p.isfinite().all() for p in model.state_dict().values())


@pytest.mark.parametrize("ckpt_every, expected", [(4, "loss is nan, gradient norm nan at step 7"),
                                                  (3, "not saving step 6")])
def test_pretrain_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, ckpt_every, expected):
    # lr = nan from the 6th update on: that update turns the weights into NaN (its own loss is fine), the
    # next step's loss is NaN. With a checkpoint due right after the bad update, the save is refused.
    real = pretrain.lr_at
    monkeypatch.setattr(pretrain, "lr_at", lambda step, cfg: float("nan") if step >= 5 else real(step, cfg))
    msg = exit_message("pretrain", ["--out", tmp_path, *SMALL, "--max_steps", 12, "--ckpt_every", ckpt_every])
    assert expected in msg
    finite_and_loadable(tmp_path, ckpt_every)
    # nothing lost: the same command without the fault resumes from that checkpoint and finishes
    monkeypatch.setattr(pretrain, "lr_at", real)
    pretrain.main(["--preset", "toy", "--device", "cpu", "--out", str(tmp_path), *SMALL, "--max_steps", "12",
                   "--ckpt_every", str(ckpt_every)])
    finite_and_loadable(tmp_path, 12)


def test_train_zero_nan_reward_stops_before_the_update(base, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_zero.zero_rewards

    def nan_from_step_4(completions, problems, format_weight=1.0):  # toy: one call a step, 2 x 4 = 8 completions
        calls["n"] += 1
        if calls["n"] <= 3:
            return real(completions, problems, format_weight=format_weight)
        nan = [float("nan")] * len(completions)
        return nan, {"accuracy": nan, "format": [0.0] * len(completions)}
    monkeypatch.setattr(train_zero, "zero_rewards", nan_from_step_4)
    argv = ["--init", base, "--out", tmp_path, "--steps", 6, "--ckpt_every", 2]
    msg = exit_message("train_zero", argv)
    assert "loss is nan" in msg and "at step 4; stopped before applying the update" in msg and "--lr" in msg
    finite_and_loadable(tmp_path, 2)
    monkeypatch.setattr(train_zero, "zero_rewards", real)
    train_zero.main(["--preset", "toy", "--device", "cpu", *map(str, argv)])
    finite_and_loadable(tmp_path, 6)


def test_train_r1_nan_names_the_stage_and_its_learning_rate(toy_speedrun, tmp_path, monkeypatch):
    """A NaN reward in reasoning RL (resumed from the toy speedrun's cold start) stops at that stage's first
    update, naming the stage, the step and GRPO's --lr."""
    out = tmp_path / "r1"
    shutil.copytree(toy_speedrun[0] / "r1" / "cold_start", out / "cold_start")

    def nan_rewards(completions, problems, lang_weight=1.0):
        nan = [float("nan")] * len(completions)
        return nan, {"accuracy": nan}
    monkeypatch.setattr(train_r1, "reasoning_rewards", nan_rewards)
    msg = exit_message("train_r1", ["--init", toy_speedrun[0] / "zero", "--out", out, "--stage", "reasoning_rl"])
    assert msg.startswith("loss is nan") and "at reasoning_rl step 1; stopped before applying the update" in msg
    assert "Lower --lr (now 5e-05) or --grad_clip" in msg
    # an SFT stage names its own learning rate (the NaN itself is test_sft_nan_names_the_step's)
    def nan_sft(*args, desc, **kwargs):
        raise FloatingPointError(f"loss is nan, gradient norm nan ({desc} step 1)")
    monkeypatch.setattr(r1mini.stage, "train_sft", nan_sft)
    msg = exit_message("train_r1", ["--init", toy_speedrun[0] / "zero", "--out", out, "--stage", "cold_start"])
    assert "(cold start SFT step 1) at the SFT stage" in msg and "Lower --sft_lr or --grad_clip" in msg


def test_sft_nan_names_the_step():
    model = Transformer(model_config("toy", vocab_size=300))
    examples = [([1, 2, 3, 4, 5], [False, False, True, True, True])] * 8
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"loss is nan.*\(sft step 1\)"):
        train_sft(model, examples, epochs=2, batch_size=4, lr=1e-3, pad_id=0)


def oom(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize("script, target, flags", [
    ("pretrain", "apply_update", "lower --batch_size"),
    ("train_zero", "rollout", "lower --group_size, --prompts_per_step or --max_new_tokens"),
    ("train_zero", "grpo_update",
     "lower --group_size, --prompts_per_step or --max_new_tokens (or set --micro_batch_size)"),
    ("eval", "evaluate_model", "lower --batch_size or --max_new_tokens"),
])
def test_cuda_out_of_memory_names_the_flag_that_lowers_memory(base, tmp_path, monkeypatch, script, target, flags):
    # train_zero's rollout and update run in the RL engine's step (r1mini/rl.py): the failure is raised there
    monkeypatch.setattr(r1mini.rl if script == "train_zero" else SCRIPTS[script], target, oom)
    argv = {"pretrain": ["--out", tmp_path, *SMALL], "train_zero": ["--init", base, "--out", tmp_path],
            "eval": ["--init", base]}[script]
    msg = exit_message(script, argv)
    assert msg.startswith("CUDA out of memory at ") and flags in msg


# -- data files ------------------------------------------------------------------------------------------

def test_read_jsonl_rejects_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xff\xfe"}\n')
    with pytest.raises(ValueError, match=r"data.jsonl, line 2: not UTF-8"):
        read_jsonl(path)
