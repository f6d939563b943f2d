"""An estimate of `bash speedrun.sh PRESET` on one GPU, stage by stage, from the presets the scripts really
use (nothing here is measured: every throughput is an assumption, written at the top, to be replaced by
benchmarks/gpu_check.sh's figures once a GPU run has been made).

Per stage: the training FLOPs (model.flops_per_token, 6N + attention, per trained token; a third of it for
the no-grad forwards of old and reference log-probs), the tokens generated and the decode steps. Upper
bounds: every generated batch runs max_new_tokens decode steps (the static decode loop runs until its
longest row stops), and every trained sequence is padded to prompt + max_new_tokens tokens.

    python benchmarks/estimate_speedrun.py [--preset gpu] [--eager]
"""
import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import distill  # noqa: E402
import eval as eval_script  # noqa: E402
import pretrain  # noqa: E402
import train_r1  # noqa: E402
import train_zero  # noqa: E402
from r1mini.model import Transformer, model_config  # noqa: E402
from r1mini.tasks import SUITES  # noqa: E402

# -- assumptions (one H100 SXM) ----------------------------------------------------------------------------
PEAK = 989e12  # dense bf16 FLOP/s, the data sheet's
TRAIN_MFU = 0.25  # a ~40M-parameter model trains well below the large-model figures (40-50%)
BANDWIDTH = 0.6 * 3.35e12  # bytes/s a decode step reads at: 60% of HBM3's 3.35 TB/s
STEP_FLOOR = {"graph": 0.25e-3, "eager": 6e-3}  # seconds a decode step costs whatever its size: a replayed
# CUDA graph (~200 kernels of a few microseconds) or eager launches (~1,000 aten ops, the 5-8 ms estimated)
COMPILE_S = 60  # compiling the decode step for one model shape and batch size (inductor's cache on disk
# makes the same shape cheap in later processes: counted once)
PROMPT = 40  # tokens of a task prompt (template or chat) at the gpu suite
GEN_BATCH = 512  # rows per generation batch outside rollouts (sample_completions on CUDA)


def decode_step_seconds(model: Transformer, rows: int, mode: str) -> float:
    """The floor, plus reading the weights (bf16) and the whole static cache (block_size slots) once."""
    cfg = model.cfg
    kv_bytes = 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * 2  # K and V, bf16, per token
    return STEP_FLOOR[mode] + (2 * model.num_params() + rows * cfg.block_size * kv_bytes) / BANDWIDTH


class Estimate:
    def __init__(self, mode: str):
        self.mode, self.rows, self.graphs = mode, [], set()

    def add(self, stage: str, model: Transformer, *, trained=0, forwards=0, generated_rows=0, max_new=0,
            batch=GEN_BATCH, per_call=()):
        """trained: tokens through forward + backward; forwards: tokens through a no-grad forward;
        generated_rows: sequences sampled, in batches of `batch`, max_new tokens each; per_call: the rows of
        each sampling call, when the stage makes several (their last batches may be smaller)."""
        flops = model.flops_per_token() * (trained + forwards / 3)
        steps = math.ceil(generated_rows / batch) * max_new if generated_rows else 0
        if generated_rows and self.mode == "graph":  # generate pads a batch's rows to a power of two
            for rows in per_call or (generated_rows,):
                self.graphs |= {(model.cfg.n_layer, model.cfg.n_embd, 1 << (n - 1).bit_length())
                                for n in {min(batch, rows), rows % batch or batch}}
        t_gen = steps * decode_step_seconds(model, min(batch, generated_rows), self.mode) if steps else 0.0
        self.rows.append((stage, flops, generated_rows * max_new, steps, flops / (TRAIN_MFU * PEAK), t_gen))

    def table(self) -> str:
        if self.graphs:
            compile_s = COMPILE_S * len(self.graphs)
            self.rows.append((f"compiling the decode step ({len(self.graphs)} model and batch shapes)", 0, 0, 0, 0,
                              compile_s))
        lines = ["| stage | train FLOPs | tokens generated (at most) | decode steps | train (s) | generate (s) "
                 "| total (s) |", "|---|---|---|---|---|---|---|"]
        for stage, flops, gen, steps, t_train, t_gen in self.rows:
            lines.append(f"| {stage} | {flops:.2e} | {gen / 1e6:.1f}M | {steps:,} | {t_train:.0f} | {t_gen:.0f} | "
                         f"{t_train + t_gen:.0f} |")
        total = sum(r[4] + r[5] for r in self.rows)
        lines.append(f"| **all** | {sum(r[1] for r in self.rows):.2e} | {sum(r[2] for r in self.rows) / 1e6:.0f}M | "
                     f"{sum(r[3] for r in self.rows):,} | {sum(r[4] for r in self.rows):.0f} | "
                     f"{sum(r[5] for r in self.rows):.0f} | **{total:.0f} ({total / 60:.0f} min)** |")
        return "\n".join(lines)


def grpo(est: Estimate, stage: str, model: Transformer, cfg, steps: int):
    """steps GRPO steps: a rollout of prompts x group rows, then mu passes of forward + backward, and the
    old and reference log-probs' forwards when they are taken."""
    rows, seq = cfg.prompts_per_step * cfg.group_size, PROMPT + cfg.max_new_tokens
    extra = (cfg.mu * cfg.minibatches > 1) + (cfg.kl_coef > 0)
    est.add(stage, model, trained=steps * cfg.mu * rows * seq, forwards=steps * extra * rows * seq,
            generated_rows=steps * rows, max_new=cfg.max_new_tokens, batch=rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gpu")
    p.add_argument("--eager", action="store_true", help="decode without CUDA graphs (the loop before them)")
    args = p.parse_args()
    preset = args.preset
    est = Estimate("eager" if args.eager else "graph")
    pre = pretrain.PretrainConfig(**pretrain.PRESETS[preset])
    vocab = pre.vocab_size + 8  # BPE ranks, then the special tokens
    with torch.device("meta"):
        model = Transformer(model_config(preset, vocab_size=vocab))
        student = Transformer(model_config(f"{preset}-student", vocab_size=vocab))
    n_tasks = len(SUITES[pre.suite])

    for name, m in (("pretrain", model), ("pretrain student", student)):
        est.add(name, m, trained=pre.max_steps * pre.batch_size * m.cfg.block_size)

    zero = train_zero.ZeroConfig(**train_zero.PRESETS[preset])
    grpo(est, "R1-Zero: GRPO", model, zero, zero.steps)
    evals = zero.steps // zero.eval_every + 1
    est.add("R1-Zero: held-out checks", model, generated_rows=evals * n_tasks * zero.eval_problems * zero.eval_k,
            max_new=zero.max_new_tokens, per_call=(n_tasks * zero.eval_problems * zero.eval_k,))

    r1 = train_r1.R1Config(**train_r1.PRESETS[preset])
    seq = PROMPT + r1.max_new_tokens
    est.add("R1 cold start: sampling + SFT", model, generated_rows=r1.cold_prompts * r1.cold_samples,
            max_new=r1.max_new_tokens, trained=r1.sft_epochs * r1.cold_examples * seq)
    grpo(est, "R1 reasoning RL", model, r1, r1.rl_steps)
    rs_examples = r1.rs_prompts * r1.rs_samples * (1 + 1 / r1.reasoning_ratio)  # at most, with the chat data
    est.add("R1 rejection sampling + SFT", model, generated_rows=r1.rs_prompts * r1.rs_samples,
            max_new=r1.max_new_tokens, trained=r1.sft_epochs * rs_examples * seq)
    est.add("R1 reward model", model, trained=r1.rm_steps * 2 * r1.rm_batch_size * seq)
    grpo(est, "R1 all-scenario RL", model, r1, r1.final_steps)
    est.add("R1 held-out checks (4 stages, en + zh)", model,
            generated_rows=4 * 2 * n_tasks * r1.eval_problems * r1.eval_k, max_new=r1.max_new_tokens,
            per_call=(n_tasks * r1.eval_problems * r1.eval_k,))

    dc = distill.DistillConfig(**distill.PRESETS[preset])
    est.add("distill: teacher samples", model, generated_rows=dc.prompts * dc.samples, max_new=dc.max_new_tokens)
    est.add("distill: student SFT", student,
            trained=dc.epochs * dc.prompts * dc.samples * (1 + 1 / dc.reasoning_ratio) * (PROMPT + dc.max_new_tokens))
    est.add("distill: held-out check", student, generated_rows=2 * n_tasks * dc.eval_problems * dc.eval_k,
            max_new=dc.max_new_tokens, per_call=(n_tasks * dc.eval_problems * dc.eval_k,))
    grpo(est, "student RL only", student, zero, zero.steps)
    est.add("student RL only: held-out checks", student,
            generated_rows=evals * n_tasks * zero.eval_problems * zero.eval_k, max_new=zero.max_new_tokens,
            per_call=(n_tasks * zero.eval_problems * zero.eval_k,))

    ev = eval_script.EvalConfig(**eval_script.PRESETS[preset])
    # speedrun.sh evaluates base, zero and the four R1 stages (the teacher's size), student and student_zero
    for m, n_ckpts in ((model, 6), (student, 2)):  # per benchmark and language: k samples, then greedy
        est.add(f"eval.py ({n_ckpts} checkpoints of {m.num_params() / 1e6:.0f}M, en + zh, k + greedy)", m,
                generated_rows=n_ckpts * n_tasks * 2 * ev.n_problems * (ev.k + 1), max_new=ev.max_new_tokens,
                batch=ev.batch_size, per_call=(ev.n_problems * ev.k, ev.n_problems))

    print(f"speedrun estimate, preset {preset}, one H100 SXM, decoding {est.mode}: model "
          f"{model.num_params() / 1e6:.1f}M parameters, student {student.num_params() / 1e6:.1f}M")
    print(f"assumed: training at {TRAIN_MFU:.0%} MFU of {PEAK / 1e12:.0f} TFLOP/s; a decode step costs "
          f"{STEP_FLOOR[est.mode] * 1e3:.2f} ms plus reading weights and cache at {BANDWIDTH / 1e12:.1f} TB/s; "
          f"{COMPILE_S} s to compile the decode step per model and batch shape; "
          f"prompts of {PROMPT} tokens; generation batches of {GEN_BATCH} rows (rollouts: the whole rollout)")
    print(est.table())


if __name__ == "__main__":
    main()
