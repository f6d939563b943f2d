"""Tests for r1mini.stage, the scripts' shared plumbing: the library's errors become one line and exit status
1 (flags named where a ConfigError names a field), a NaN or CUDA out of memory becomes what to do, and the
parent's suite, the dev check and meta.json are what each stage used to write by hand."""
import argparse
from dataclasses import dataclass

import pytest
import torch

from r1mini.config import ConfigError, UserError
from r1mini.stage import exits_with_message, parent_suite, reply_metrics, stage_meta, stage_tasks, step_guard
from r1mini.task_files import FileTask
from r1mini.tasks import SUITES


def test_exits_with_message_turns_user_errors_into_one_line():
    @exits_with_message
    def main(error):
        raise error
    for error, message in [(ConfigError("batch_size", "must be > 0, got 0"), "--batch_size must be > 0, got 0"),
                           (UserError("no checkpoint at out/base: run pretrain.py first"),
                            "no checkpoint at out/base: run pretrain.py first"),
                           (FloatingPointError("not saving step 6"), "not saving step 6")]:
        with pytest.raises(SystemExit) as e:
            main(error)
        assert e.value.code == message
    with pytest.raises(KeyError):  # a bug keeps its traceback
        main(KeyError("x"))
    assert exits_with_message(lambda x: x + 1)(1) == 2  # and a run that does not fail returns what main returns


def test_step_guard_says_what_to_do():
    with pytest.raises(SystemExit) as e:
        with step_guard("step 4 (update)", "out/zero", lr_flag="--lr (now 0.1)"):
            raise FloatingPointError("loss is nan, gradient norm nan")
    assert e.value.code == ("loss is nan, gradient norm nan at step 4 (update); stopped before applying the update. "
                            "Lower --lr (now 0.1) or --grad_clip. The last checkpoint in out/zero is intact; rerun the "
                            "same command to resume from it.")
    with pytest.raises(SystemExit) as e:
        with step_guard("step 2", None, memory_flags="--batch_size"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert e.value.code == "CUDA out of memory at step 2: lower --batch_size, or use a smaller --preset."
    with pytest.raises(KeyError):  # anything else is not the guard's business
        with step_guard("step 2", None):
            raise KeyError("x")
    with step_guard("step 2", None):  # and nothing happens when nothing fails
        pass


def test_parent_suite_and_tasks(tmp_path):
    base = {"config": {"suite": "toy"}}
    zero = {"config": {"suite": "cpu", "tasks": ""}, "base_config": {"suite": "toy"}}
    assert parent_suite(base, "gpu") == "toy" and parent_suite(zero, "gpu") == "cpu"
    assert parent_suite({"base_config": {"suite": "toy"}}, "gpu") == "toy" and parent_suite({}, "gpu") == "gpu"
    name, tasks = stage_tasks("", "", base, "gpu")  # the parent's suite
    assert name == "toy" and set(tasks) == set(SUITES["toy"])
    name, tasks = stage_tasks("cpu", "", base, "gpu")  # the stage's own wins
    assert name == "cpu" and set(tasks) == set(SUITES["cpu"])
    data = tmp_path / "mine.jsonl"
    data.write_text('{"question": "q", "answer": "1", "checker": "number"}\n')
    _, tasks = stage_tasks("", "", {"config": {"suite": "toy", "tasks": str(data)}}, "gpu")  # the parent's file
    assert [type(t) for t in tasks.values()] == [FileTask] and tasks["jsonl"].path == str(data)


@dataclass
class Cfg:
    lr: float = 0.1


def test_stage_meta_holds_what_made_the_checkpoint():
    args = argparse.Namespace(preset="toy", seed=3)
    meta = stage_meta("zero", args, Cfg(), parent="out/base", step=4, done=False, metrics={"reward": 1.0},
                      suite="toy", base_config={"suite": "toy"})
    assert meta == {"stage": "zero", "parent": "out/base", "step": 4, "done": False, "preset": "toy", "seed": 3,
                    "config": {"lr": 0.1, "suite": "toy"}, "base_config": {"suite": "toy"},
                    "metrics": {"reward": 1.0}}
    assert stage_meta("base", args, Cfg(), parent=None, step=1, metrics={})["config"] == {"lr": 0.1}  # no suite


def test_reply_metrics_split_accuracy_by_reflection():
    """reflect_acc and plain_acc: the accuracy of the replies with a reflection word and of the others; empty
    (null once averaged) when no reply is of the kind, and absent when the reward has no accuracy part."""
    completions = ["<think>2 + 2 = 5. Wait, 2 + 2 = 4.</think><answer>4</answer>", "<answer>4</answer>",
                   "<think>hmm, let me check</think><answer>5</answer>", "<answer>5</answer>"]
    measured = reply_metrics(completions, {"accuracy": [1.0, 1.0, 0.0, 1.0]})
    assert measured["reflection"] == [1, 0, 1, 0] and measured["steps_share"] == [True, False, False, False]
    assert measured["reflect_acc"] == [1.0, 0.0] and measured["plain_acc"] == [1.0, 1.0]
    assert measured["mixed_lang"] == [False] * 4 and reply_metrics(["2 + 2 = 4，等于四"], {})["mixed_lang"] == [False]
    assert reply_metrics(["The sum 是 4"], {})["mixed_lang"] == [True]
    assert reply_metrics(completions[1::2], {"accuracy": [1.0, 1.0]})["reflect_acc"] == []
    assert "reflect_acc" not in reply_metrics(completions, {"other": [1.0] * 4})
    # accuracy of some replies only (the final RL's general prompts have none): which reply each value belongs to
    # is unknown, so neither list gets one, but both keys are there, as on every other rank (one all-reduce)
    partial = reply_metrics(completions, {"accuracy": [1.0, 0.0]})
    assert partial["reflect_acc"] == [] and partial["plain_acc"] == []
