"""What every stage script shares, written once: turning the library's errors into messages and exit codes,
the suite a stage inherits from its parent checkpoint, the SFT of a base model, what the RL stages measure of
each reply, the dev-split check a stage stores, and the meta.json it saves. The scripts (pretrain.py,
train_zero.py, train_r1.py, distill.py, eval.py) read as their stage's algorithm; this is their plumbing, and
the one place in r1mini besides config.parse_config that speaks in command-line flags.

    @exits_with_message                 # a UserError prints its message and exits 1 (docs/errors.md)
    def main(argv=None): ...
    with step_guard("step 7", out, "--lr (now 0.003)"):   # a NaN loss or CUDA OOM: what to do, and exit 1
        train_step(...)
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path

import torch

from r1mini.checkpoint import load_checkpoint
from r1mini.config import UserError, command_line_message
from r1mini.evaluate import EVAL_LANGS, heldout_eval, heldout_problems
from r1mini.filters import mixed_language
from r1mini.formats import chat_ids, stop_ids
from r1mini.rewards import count_reflection_words, is_step_by_step
from r1mini.sft import train_sft
from r1mini.task_files import task_set
from r1mini.tasks import Problem, Task

# what lowers the memory of a GRPO step: fewer or shorter rollouts, or the update in smaller micro-batches
GRPO_MEMORY_FLAGS = "--group_size, --prompts_per_step or --max_new_tokens (or set --micro_batch_size)"


# -- failures: the library raises, the script says what to do ---------------------------------------------------------

def exits_with_message(main):
    """main(argv), with the failures a user can fix ending the process as one line and exit status 1 instead of
    a traceback: a UserError's message (a ConfigError's field named as its flag, --field ...), and a NaN that
    no step_guard caught (FloatingPointError: the weights turned NaN before a save). Anything else is a bug,
    and keeps its traceback."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            raise SystemExit(command_line_message(e)) from None
        except FloatingPointError as e:
            raise SystemExit(str(e)) from None
    return run


@contextlib.contextmanager
def step_guard(where: str, out: str | Path | None, lr_flag: str = "--lr", memory_flags: str = "--batch_size"):
    """Turn the failures of a training step that a user can fix into a SystemExit that says what to do: a
    NaN/inf loss or gradient (FloatingPointError from optim.apply_update, raised before the update) and CUDA
    running out of memory. Either way nothing was saved after the last checkpoint in `out`, so a rerun resumes
    from it."""
    resume = f" The last checkpoint in {out} is intact; rerun the same command to resume from it." if out else ""
    try:
        yield
    except FloatingPointError as e:
        raise SystemExit(f"{e} at {where}; stopped before applying the update. Lower {lr_flag} or --grad_clip."
                         + resume) from None
    except torch.cuda.OutOfMemoryError:
        raise SystemExit(f"CUDA out of memory at {where}: lower {memory_flags}, or use a smaller --preset."
                         + resume) from None


# -- what a stage starts from -----------------------------------------------------------------------------------------

def parent_suite(meta: dict, preset: str) -> str:
    """The suite a checkpoint was trained on: its own config's, else its base model's (base_config), else the
    preset's own suite."""
    return meta.get("config", {}).get("suite") or meta.get("base_config", {}).get("suite") or preset


def stage_tasks(suite: str, tasks_file: str, parent_meta: dict, preset: str) -> tuple[str, dict[str, Task]]:
    """The suite's name and the tasks a stage draws from: `suite` and `tasks_file` (its config's) when set,
    else its parent checkpoint's (parent_meta, its meta.json)."""
    suite_name = suite or parent_suite(parent_meta, preset)
    return suite_name, task_set(suite_name, tasks_file or parent_meta.get("config", {}).get("tasks", ""))


def sft_from_base(base: str | Path, made_by: str, pairs: list[tuple[str, str]], *, epochs: int, batch_size: int,
                  lr: float, micro_batch_size: int, activation_checkpointing: bool, seed: int,
                  device: torch.device, desc: str, preset: str | None = None, log=None):
    """SFT of a fresh copy of the base model in `base` on (user, assistant) pairs in the chat format, the loss
    on the replies only (r1mini/sft.py): R1's cold start and rejection SFT, and distillation. Returns the
    model, its tokenizer, the base's meta.json and the loss of every step."""
    model, tokenizer, meta = load_checkpoint(base, device, expect_stage="base", made_by=made_by, preset=preset)
    examples = [chat_ids(tokenizer, user, reply) for user, reply in pairs]
    model.checkpoint_blocks = activation_checkpointing
    losses = train_sft(model, examples, epochs=epochs, batch_size=batch_size, lr=lr,
                       pad_id=stop_ids(tokenizer, chat=True)[0], seed=seed, micro_batch_size=micro_batch_size,
                       desc=desc, log=log)
    return model, tokenizer, meta, losses


# -- what a stage measures and leaves ---------------------------------------------------------------------------------

def reply_metrics(completions: list[str], parts: dict[str, list[float]]) -> dict[str, list[float]]:
    """What R1-Zero and R1's RL stages log of a step's replies besides the reward (rl.grpo_step averages each
    over every rank's values): the share that work step by step, reflection words per reply, the share that
    mix languages, and the accuracy of the replies that reflect and of those that do not (when the reward has
    an accuracy part)."""
    reflection = [count_reflection_words(c) for c in completions]
    measured = {"steps_share": [is_step_by_step(c) for c in completions], "reflection": reflection,
                "mixed_lang": [mixed_language(c) for c in completions]}
    accuracy = parts.get("accuracy")
    if accuracy is not None:  # the same keys on every rank (ranks all-reduce one list of them); where accuracy
        # covers only some replies (general prompts in the final RL), which reply each value belongs to is
        # unknown, and the rank adds no value to either
        known = len(accuracy) == len(completions)
        measured["reflect_acc"] = [a for a, r in zip(accuracy, reflection) if r] if known else []
        measured["plain_acc"] = [a for a, r in zip(accuracy, reflection) if not r] if known else []
    return measured


def dev_sets(tasks: dict[str, Task], n: int, seed: int) -> dict[str, list[Problem]]:
    """n dev-split problems per task, in each language (different problems in each; a JSONL file's in its own
    languages only)."""
    return {lang: heldout_problems(tasks, n, seed=seed, lang=lang, split="dev") for lang in EVAL_LANGS}


def no_dev_note(tasks: dict[str, Task], eval_sets: dict[str, list[Problem]]) -> str | None:
    """What a stage prints when its dev check has nothing to check: a JSONL file (--tasks) whose lines all
    hashed to other splits (5% go to dev: a file of a few dozen lines may have none). The stage runs unwatched."""
    if any(eval_sets.values()):
        return None
    names = ", ".join(getattr(task, "path", "") or task.name for task in tasks.values())
    return (f"note: {names} has no dev problems (a hash of each question puts 5% of a file's lines there), so "
            f"the dev checks are skipped; add lines to watch the run")


def dev_check(model, tokenizer, eval_sets: dict[str, list[Problem]], *, k: int, max_new_tokens: int,
              chat: bool = True) -> dict:
    """The check a stage stores in its meta.json: pass@1 (k samples at T 0.6, top-p 0.95), language
    consistency and format rate on dev-split problems, per prompt language."""
    result = {}
    for lang, (r, _) in heldout_eval(model, tokenizer, eval_sets, k=k, max_new_tokens=max_new_tokens,
                                     chat=chat).items():
        result.update({f"pass@1/{lang}": round(r["pass@1"], 4), f"lang/{lang}": round(r["lang_consistency"], 4),
                       f"format/{lang}": round(r["format"], 4)})
    return result


def stage_meta(stage: str, args, cfg, *, parent: str | None, step: int, metrics: dict, done: bool = True,
               suite: str | None = None, **extra) -> dict:
    """A checkpoint's meta.json: what made it (the stage, its parent checkpoint, the command line's preset and
    seed, the resolved config with the suite it drew from) and how far it got (step, done), then the stage's
    own fields (`extra`: the base model's config, the teacher, ...) and its metrics."""
    config = dataclasses.asdict(cfg) if suite is None else {**dataclasses.asdict(cfg), "suite": suite}
    return {"stage": stage, "parent": parent, "step": step, "done": done, "preset": args.preset, "seed": args.seed,
            "config": config, **extra, "metrics": metrics}
