"""Evaluate checkpoints on held-out problems the way the R1 paper reports (zero-shot; k samples per problem
at temperature 0.6 and top-p 0.95): each task of the suite is a benchmark named by its difficulty
(add-3d, mul-3x1, linear-eq, countdown-4, ...), asked in English and in Chinese.

Per benchmark: pass@1 (the mean correctness of the k samples), cons@k (majority vote over the k answers),
pass@k (the unbiased estimator), greedy accuracy (one sample at temperature 0), format rate, mean response
length in tokens, language consistency of the reasoning with the prompt (English and Chinese prompts),
share and accuracy of step-by-step vs direct answers, reflection words per response.

Base and R1-Zero checkpoints are prompted with the R1-Zero template, SFT'd ones (R1 stages, students) in
the chat format; the checkpoint's meta.json says which. Prints a markdown table per checkpoint and writes
its JSON to <checkpoint>/eval.json (and all of them to --out when given).

    python eval.py --init out/base                        # the base model
    python eval.py --init out/zero,out/r1/final_rl --k 16 # several checkpoints
    python eval.py --init out/base --temperature 1.0      # how the base model behaves when sampled freely
    torchrun --nproc_per_node=2 eval.py --init out/zero   # the problems striped over 2 processes (GPUs)
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch

from r1mini.checkpoint import load_checkpoint, seed_everything
from r1mini.config import NON_NEGATIVE, TASKS_FILE, TOP_P, UserError, name_in, one_of, parse_config, validate
from r1mini.device import pick_device
from r1mini.distributed import is_main, print0, run_script, setup_distributed, teardown_distributed
from r1mini.evaluate import evaluate_model, heldout_problems
from r1mini.files import atomic_write_json
from r1mini.report import interval, markdown_table
from r1mini.sampling import sample_completions
from r1mini.stage import exits_with_message, parent_suite, step_guard
from r1mini.task_files import FileTask, task_set
from r1mini.tasks import SUITES


@dataclass
class EvalConfig:
    suite: str = ""  # task suite; "" means the one the checkpoint's base model was pretrained on
    n_problems: int = 100  # test-split problems per task and language, all different: 200 per benchmark in en, zh
    k: int = 4  # samples per problem
    temperature: float = 0.6  # the paper's evaluation setting
    top_p: float = 0.95  # likewise
    max_new_tokens: int = 224  # the longest completion; a reply whose check disagrees runs to ~180 tokens
    langs: str = "en,zh"  # languages of the prompts
    batch_size: int = 512  # sequences per generation batch (2 cores: a checkpoint in 21 s at 512, 26 s at 128)
    show: int = 1  # sample completions to print per benchmark
    chat: str = "auto"  # "auto" (chat for R1 stages and students, else the R1-Zero template), "yes", "no"
    tasks: str = ""  # a JSONL task file (FILE.jsonl or FILE.jsonl:CHECKER) instead of the suite
    speculative: bool = False  # decode by speculative decoding with the MTP draft (checkpoints with MTP modules)

    RULES: ClassVar[dict] = {
        "suite": name_in(SUITES, allow_empty=True, allow_import=True), "top_p": TOP_P, "show": NON_NEGATIVE,
        "chat": one_of("auto", "yes", "no"), "tasks": TASKS_FILE,
        "langs": (lambda v: set(v.split(",")) <= {"en", "zh"}, "a comma-separated list of en, zh")}

    def __post_init__(self):
        validate(self)


PRESETS = {"toy": dict(n_problems=3, k=2, max_new_tokens=24, show=0), "cpu": dict(),
           "gpu": dict(n_problems=100, k=16, max_new_tokens=384, batch_size=512)}


def uses_chat(meta: dict, chat: str) -> bool:
    stage = str(meta.get("stage", ""))
    return chat == "yes" or (chat == "auto" and (stage.startswith("r1/") or stage.startswith("student")))


@exits_with_message
def main(argv=None):
    cfg, args = parse_config(EvalConfig, PRESETS, __doc__, argv, default_init="out/base", default_out="",
                             init_help="checkpoint directories to evaluate, comma-separated",
                             out_help="a JSON file for every checkpoint's results, besides each checkpoint's own "
                                      "eval.json ('': none)")
    langs = tuple(cfg.langs.split(","))  # values, like every flag's, checked by parse_config
    device = pick_device(args.device)
    setup_distributed(device)
    everything = {}
    for init in args.init.split(","):
        seed_everything(args.seed, device)
        t0 = time.time()
        model, tokenizer, meta = load_checkpoint(init, device)
        tasks = task_set(cfg.suite or parent_suite(meta, args.preset), cfg.tasks)
        file_task = tasks.get(FileTask.name)
        if isinstance(file_task, FileTask):  # a file's languages only (its own, not en and zh)
            if not file_task.pool["test"]:
                raise UserError(f"{file_task.path} has no test problems (a hash of each question puts 10% of a file's "
                                f"lines there): name it as a test file ({file_task.label}_test.jsonl) to evaluate "
                                f"on every line")
            langs = tuple(lang for lang in cfg.langs.split(",") if file_task.heldout(1, lang, "test"))
            if not langs:
                has = sorted({p.lang for p in file_task.pool["test"]})
                raise UserError(f"{file_task.path} has no test problems in {cfg.langs}, only in {','.join(has)}: "
                                f"--langs {','.join(has)}")
        chat = uses_chat(meta, cfg.chat)
        print0(f"\n{init} (stage {meta.get('stage')}, step {meta.get('step')}): {cfg.n_problems} problems per "
               f"benchmark and language, k={cfg.k}, T={cfg.temperature}, top-p {cfg.top_p}, "
               f"{'chat format' if chat else 'R1-Zero template'}")
        if cfg.speculative and not model.cfg.mtp_depth:
            raise SystemExit(f"--speculative true needs MTP modules, and {init} has none (pretrain.py --mtp_depth 1)")
        draft_stats = {} if cfg.speculative else None
        with torch.no_grad(), step_guard(init, None, memory_flags="--batch_size or --max_new_tokens"):
            results = evaluate_model(model, tokenizer, tasks, chat=chat, n_problems=cfg.n_problems, k=cfg.k,
                                     langs=langs, temperature=cfg.temperature, top_p=cfg.top_p,
                                     max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, seed=args.seed,
                                     draft_stats=draft_stats)
        k = cfg.k
        header = ["benchmark", "pass@1", "95% interval", f"cons@{k}", "95% interval", f"pass@{k}", "greedy", "format",
                  "length", "steps share", "reflection"] + [f"lang {lang}" for lang in langs]
        rows = [[name, r["pass@1"], interval(r["pass@1_ci"]), r[f"cons@{k}"], interval(r[f"cons@{k}_ci"]),
                 r[f"pass@{k}"], r["greedy"], r["format"], round(r["length"], 1), r["steps_share"],
                 round(r["reflection"], 2)] + [r["by_lang"][lang]["lang_consistency"] for lang in langs]
                for name, r in results.items()]
        print0(markdown_table(header, rows))
        if draft_stats:
            acceptance = draft_stats["accepted"] / max(1, draft_stats["drafted"])
            print0(f"speculative decoding: {draft_stats['accepted']:,} of {draft_stats['drafted']:,} MTP drafts "
                   f"accepted ({acceptance:.3f}, this process's)")
        for task in tasks.values() if is_main() else ():  # a look at what the model writes
            for p in heldout_problems({task.name: task}, cfg.show, seed=args.seed, lang=langs[-1], split="test"):
                s = sample_completions(model, tokenizer, [p], 1, temperature=cfg.temperature, top_p=cfg.top_p,
                                       max_new_tokens=cfg.max_new_tokens, seed=args.seed, chat=chat)[0]
                print0(f"  {task.label}  Q: {p.question}  (answer {p.answer})\n    A: {s.completions[0]!r}")
        record = {"checkpoint": init, "stage": meta.get("stage"), "chat": chat, "config": asdict(cfg),
                  "seed": args.seed, "seconds": round(time.time() - t0, 1), "results": results,
                  **({"draft_stats": draft_stats} if draft_stats else {})}
        if is_main():
            atomic_write_json(record, Path(init.removeprefix("hf:")) / "eval.json")
        everything[init] = record
    if args.out and is_main():
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(everything, args.out)
        print0(f"wrote {args.out}")
    teardown_distributed()
    return everything


if __name__ == "__main__":
    run_script(main)
