"""Evaluate a checkpoint on held-out problems under the R1-Zero template, the way the R1 paper reports:
k samples per problem at temperature 0.6 and top-p 0.95; pass@1 is the mean correctness of the samples,
pass@k the unbiased estimator, cons@k the majority vote. Also: format adherence, share and accuracy of
step-by-step vs direct answers, mean length (characters), reflection words per response.

    python eval.py --init out/base                     # the base model
    python eval.py --init out/zero --k 16
    python eval.py --init out/base --temperature 1.0   # how the base model behaves when sampled freely
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from r1mini.common import load_checkpoint, parse_config, pick_device, print0, seed_everything, step_guard
from r1mini.evaluate import heldout_problems, sample_completions, score
from r1mini.tasks import suite


@dataclass
class EvalConfig:
    suite: str = ""  # task suite; "" means the one the checkpoint was pretrained on
    n_problems: int = 50  # held-out problems per task and language
    k: int = 8  # samples per problem
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 160  # the longest English multiplication reply with its summary is ~130 tokens
    langs: str = "en,zh"  # languages of the prompts
    batch_size: int = 128
    show: int = 2  # sample completions to print per task
    chat: str = "auto"  # prompt format: "auto" (chat for R1 stages and students, else the R1-Zero template), "yes", "no"


PRESETS = {"toy": dict(n_problems=3, k=2, max_new_tokens=24, show=0), "cpu": dict(),
           "gpu": dict(n_problems=100, k=16, max_new_tokens=384)}


def main(argv=None):
    cfg, args = parse_config(EvalConfig, PRESETS, __doc__, argv, default_init="out/base", default_out="")
    device = pick_device(args.device)
    seed_everything(args.seed)
    model, tokenizer, meta = load_checkpoint(args.init, device)
    tasks = suite(cfg.suite or meta.get("config", {}).get("suite", args.preset))
    stage = str(meta.get("stage", ""))
    chat = cfg.chat == "yes" or (cfg.chat == "auto" and (stage.startswith("r1/") or stage.startswith("student")))
    results = {}
    print0(f"{args.init} (stage {stage}, step {meta.get('step')}): k={cfg.k}, T={cfg.temperature}, "
           f"top_p={cfg.top_p}, {'chat format' if chat else 'R1-Zero template'}")
    header = f"{'task':<10}{'lang':<5}{'pass@1':>8}{f'pass@{cfg.k}':>8}{f'cons@{cfg.k}':>8}{'format':>8}" \
             f"{'steps%':>8}{'steps acc':>10}{'direct acc':>11}{'length':>8}{'reflect':>8}{'lang':>7}"
    print0(header)
    for name, task in tasks.items():
        for lang in cfg.langs.split(","):
            problems = heldout_problems({name: task}, cfg.n_problems, seed=args.seed, lang=lang)
            with torch.no_grad(), step_guard(f"{name}/{lang}", None, memory_flags="--batch_size or --max_new_tokens"):
                samples = sample_completions(model, tokenizer, problems, cfg.k, temperature=cfg.temperature,
                                             top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                             batch_size=cfg.batch_size, seed=args.seed, chat=chat)
            r = score(samples, cfg.k, chat=chat)
            results[f"{name}/{lang}"] = r
            print0(f"{name:<10}{lang:<5}{r['pass@1']:>8.3f}{r[f'pass@{cfg.k}']:>8.3f}{r[f'cons@{cfg.k}']:>8.3f}"
                   f"{r['format']:>8.3f}{r['steps_share']:>8.3f}{r['steps_acc']:>10.3f}{r['direct_acc']:>11.3f}"
                   f"{r['length']:>8.1f}{r['reflection']:>8.2f}{r['lang_consistency']:>7.3f}")
            for s in samples[:cfg.show]:
                print0(f"    Q: {s.problem.question}  (answer {s.problem.answer})\n    A: {s.completions[0]!r}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"checkpoint": args.init, "config": vars(cfg), "results": results},
                                             indent=2, ensure_ascii=False))
        print0(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
