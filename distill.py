"""Distillation (DeepSeek-R1 §2.4): the final R1 model's reasoning, taught to a smaller model by SFT alone.

1. Sample the teacher (out/r1/final_rl) n times on each of many training prompts, in the chat format, at
   temperature 0.6 / top-p 0.95; keep the samples that are correct and readable: the rejection filters of
   R1's stage 3 (no mixed language, no overlong paragraph, no code block, no repetition, no duplicates).
2. Add non-reasoning chat data at the paper's ratio (600k reasoning : 200k other, 3:1).
3. SFT the student's own base model (pretrain.py --preset cpu-student, or gpu-student) on it; no RL.

The paper's Table 6 compares this with RL run directly on the same small base (Qwen-32B-Zero): here that
is `train_zero.py --init <student base>`, which speedrun.sh runs with a comparable budget. The samples are
text, so teacher and student may have different tokenizers.

Writes out/student (stage "student/distill") with distill_data.jsonl, the data it was trained on. The
sampled data is saved before the SFT starts: an interrupted run reuses it when rerun with the same command.

    python distill.py                                   # out/r1/final_rl -> out/student_base -> out/student
    python distill.py --preset toy          # out/toy/r1/final_rl into out/toy/student_base: out/toy/student
    torchrun --nproc_per_node=2 distill.py  # sampling striped over ranks, the SFT data parallel
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from r1mini.checkpoint import check_preset, load_checkpoint, save_checkpoint, seed_everything
from r1mini.config import NON_NEGATIVE, POSITIVE, SHARE, TASKS_FILE, TOP_P, UserError, name_in, parse_config, validate
from r1mini.device import pick_device
from r1mini.distributed import (is_main, print0, report_replicas_in_sync, run_script, setup_distributed,
                                teardown_distributed)
from r1mini.files import atomic_write
from r1mini.jsonl import JsonlLogger, read_jsonl, write_jsonl
from r1mini.sampling import sample_striped
from r1mini.sft_data import rejection_sampling_data
from r1mini.stage import dev_check, dev_sets, exits_with_message, sft_from_base, stage_meta, stage_tasks, step_guard
from r1mini.tasks import SUITES, draw_problems


@dataclass
class DistillConfig:
    student: str = "out/student_base"  # the student's base checkpoint (pretrain.py --preset cpu-student)
    suite: str = ""  # "" means the teacher's
    prompts: int = 2000  # training prompts sampled from the teacher
    samples: int = 2  # teacher samples per prompt
    temperature: float = 0.6  # of the teacher's samples (the paper's evaluation setting)
    top_p: float = 0.95  # nucleus sampling of the teacher
    max_new_tokens: int = 224  # the longest teacher reply, in tokens
    zh_share: float = 0.4  # share of prompts asked in Chinese
    reasoning_ratio: float = 3.0  # reasoning : non-reasoning examples
    epochs: int = 3  # of SFT on the kept samples
    batch_size: int = 32  # all ranks together
    micro_batch_size: int = 0  # > 0: gradient accumulation over micro-batches of this many rows per rank
    lr: float = 1e-3  # SFT's peak learning rate
    batch_gen: int = 512  # sequences per generation batch
    eval_problems: int = 25  # dev-split problems per task and language, for meta.json
    eval_k: int = 4  # samples per dev problem
    tasks: str = ""  # a JSONL task file (FILE.jsonl or FILE.jsonl:CHECKER) instead of the suite; "": the teacher's
    activation_checkpointing: bool = False  # recompute each block in backward: less memory for a large student

    RULES: ClassVar[dict] = {"suite": name_in(SUITES, allow_empty=True, allow_import=True), "top_p": TOP_P,
                             "zh_share": SHARE, "reasoning_ratio": POSITIVE, "lr": POSITIVE,
                             "micro_batch_size": NON_NEGATIVE, "tasks": TASKS_FILE}

    def __post_init__(self):
        validate(self)


PRESETS = {
    "toy": dict(prompts=6, samples=2, max_new_tokens=24, epochs=1, batch_size=8, eval_problems=2, eval_k=2,
                student="out/toy/student_base"),
    "cpu": dict(),
    "gpu": dict(prompts=8000, samples=4, max_new_tokens=384, epochs=2, batch_size=64, eval_problems=100, eval_k=16,
                batch_gen=512),
}


@exits_with_message
def main(argv=None):
    cfg, args = parse_config(DistillConfig, PRESETS, __doc__, argv, default_init="out/r1/final_rl",
                             default_out="out/student")
    device = pick_device(args.device)
    setup_distributed(device)
    seed_everything(args.seed, device)
    out = Path(args.out)
    t0 = time.time()

    # -- 1-2: the teacher's correct, readable samples plus non-reasoning data (reused when already there) ----
    check_preset(out, args.preset)  # a run of another preset in --out is not resumed
    teacher, teacher_tok, teacher_meta = load_checkpoint(args.init, device, expect_stage="r1", made_by="train_r1.py",
                                                         preset=args.preset)
    suite_name, tasks = stage_tasks(cfg.suite, cfg.tasks, teacher_meta, args.preset)
    rows, counts = teacher_data(teacher, teacher_tok, tasks, cfg, args.seed, out / "distill_data.jsonl")
    teacher = None  # free it before the student trains
    t_data = time.time() - t0

    # -- 3: SFT of the student's base on the teacher's text -------------------------------------------------
    logger = JsonlLogger(out / "log.jsonl")
    with step_guard("the distillation SFT", None, "--lr", "--batch_size (or set --micro_batch_size)"):
        model, tokenizer, student_meta, losses = sft_from_base(
            cfg.student, "pretrain.py --preset cpu-student", [(r["user"], r["assistant"]) for r in rows],
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, micro_batch_size=cfg.micro_batch_size,
            activation_checkpointing=cfg.activation_checkpointing, seed=args.seed, device=device,
            desc="distill SFT", preset=args.preset, log=logger.log)
    report_replicas_in_sync(model)

    # -- a quick dev-split check for meta.json (eval.py gives the full picture) -----------------------------
    metrics = {"examples": len(rows), "reasoning": sum(r.get("kind") == "reasoning" for r in rows),
               **{f"filter/{k}": v for k, v in counts.items()}, "sft_loss": round(losses[-1], 4),
               "sft_steps": len(losses), "seconds_data": round(t_data, 1)}
    metrics.update(dev_check(model, tokenizer, dev_sets(tasks, cfg.eval_problems, args.seed), k=cfg.eval_k,
                             max_new_tokens=cfg.max_new_tokens))
    metrics["seconds"] = round(time.time() - t0, 1)
    meta = stage_meta("student/distill", args, cfg, parent=cfg.student, step=len(losses), metrics=metrics,
                      suite=suite_name, teacher=args.init, base_config=student_meta.get("config", {}))
    save_checkpoint(out, model, tokenizer, meta)
    print0("distilled: " + " ".join(f"{k}={v}" for k, v in metrics.items()) + f"\nwrote {out}")
    teardown_distributed()


def teacher_data(teacher, tokenizer, tasks: dict, cfg: DistillConfig, seed: int, data_file: Path):
    """The SFT rows (and the rejection filters' counts): read back from data_file when an earlier run saved
    them, else sampled from the teacher (each rank its stripe of the prompts), filtered, and saved before
    the SFT starts."""
    if data_file.exists():
        try:
            rows = read_jsonl(data_file)
        except UserError as e:
            raise UserError(f"{e}; or delete {data_file} to sample the teacher again") from None
        if any(not isinstance(r.get("user"), str) or not isinstance(r.get("assistant"), str) for r in rows):
            raise UserError(f"{data_file}: every line needs \"user\" and \"assistant\" strings; fix it or delete "
                            f"the file to sample the teacher again")
        print0(f"reusing {len(rows)} examples from {data_file}")
        return rows, {}
    problems = draw_problems(random.Random(seed), tasks, cfg.prompts, cfg.zh_share)
    with torch.no_grad():
        sampled = sample_striped(teacher, tokenizer, problems, cfg.samples, temperature=cfg.temperature,
                                 top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_gen,
                                 seed=seed, chat=True, progress="teacher samples" if is_main() else None)
    rows, counts = rejection_sampling_data([(s.problem, s.completions) for s in sampled], cfg.reasoning_ratio,
                                           seed=seed)
    if is_main():
        data_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(data_file, lambda tmp: write_jsonl(tmp, rows))
    print0(f"teacher samples: {counts['total']}, kept {counts['kept']} "
           f"({', '.join(f'{k} -{v}' for k, v in counts.items() if k not in ('total', 'kept'))}); "
           f"+ {len(rows) - counts['kept']} non-reasoning examples")
    return rows, counts


if __name__ == "__main__":
    run_script(main)
