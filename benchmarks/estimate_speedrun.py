"""An estimate of `bash speedrun.sh PRESET` on one H100 SXM, stage by stage, from the presets the scripts really
use, as a range between two sets of assumptions (nothing here is measured: every throughput below is an
assumption, to be replaced by benchmarks/gpu_check.sh's figures once a GPU has run it).

Per stage: the training FLOPs (model.flops_per_token, 6N + attention, per trained token; a third of it for the
no-grad forwards of reference log-probs), the vocabulary head apart (it runs in float32, on CUDA cores, not
on the bf16 tensor cores), the tokens generated, the decode steps, and the compiles of the CUDA-graph decode
step. Upper bounds: every generated batch runs max_new_tokens decode steps (the static loop runs until its
longest row stops), every trained sequence is padded to prompt + max_new_tokens tokens (the GRPO update and
SFT cut their chunks at the longest row: about half of that, at the cpu preset), and every generation batch
is the largest power of two up to 512.

    python benchmarks/estimate_speedrun.py [--preset gpu]
"""
import argparse
import math
import sys
from dataclasses import dataclass
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

# -- the device: one H100 SXM, from NVIDIA's data sheet ---------------------------------------------------------
PEAK_BF16 = 989e12  # dense bf16 tensor-core FLOP/s
PEAK_FP32 = 67e12  # float32 FLOP/s on CUDA cores (the vocabulary head: float32, and TF32 is off by default)
HBM = 3.35e12  # bytes/s


@dataclass
class Assumptions:
    """What the estimate cannot know without a GPU, at its two ends."""
    name: str
    train_mfu: float  # of the bf16 peak, for the body's matmuls, eager (speedrun.sh passes no --compile)
    head_efficiency: float  # of the float32 peak, for the vocabulary head
    bandwidth: float  # share of HBM bandwidth a decode step's reads reach
    step_floor: float  # seconds a decode step costs at the least: the graph's replay, the ~25 kernels of
    # sampling outside the graph and the Python loop around them (the GPU waits on them when the graph is short)
    compile_cold: float  # seconds to compile and record the decode step for a new model shape and batch size
    compile_warm: float  # the same shape again in a later process: Inductor's cache on disk, a new recording


RANGE = (Assumptions("fast", train_mfu=0.30, head_efficiency=0.7, bandwidth=0.75, step_floor=0.3e-3,
                     compile_cold=30, compile_warm=8),
         Assumptions("slow", train_mfu=0.15, head_efficiency=0.4, bandwidth=0.5, step_floor=0.8e-3,
                     compile_cold=90, compile_warm=25))
PROMPT = 40  # tokens of a task prompt (template or chat) at the gpu suite
GEN_BATCH = 512  # rows per generation batch outside rollouts (memory.GENERATION_ROWS, when they fit)


def decode_step_seconds(model: Transformer, rows: int, a: Assumptions) -> float:
    """The longer of the step's floor and its reads: the float32 weights, autocast's bf16 copy of them written
    and read (the casts are inside the graph), and the whole static cache (block_size slots of every row,
    bf16, read by every step whatever the rows' lengths)."""
    cfg = model.cfg
    kv_bytes = 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * 2  # K and V, bf16, per slot
    reads = 8 * model.num_params() + rows * cfg.block_size * kv_bytes
    return max(a.step_floor, reads / (a.bandwidth * HBM))


def padded(rows: int) -> int:
    return 1 << (rows - 1).bit_length()


class Estimate:
    def __init__(self, a: Assumptions):
        self.a, self.rows, self.shapes = a, [], {}  # shapes: (model shape, batch) -> the processes that compile it

    def add(self, stage: str, model: Transformer, process: str, *, trained=0, forwards=0, generated_rows=0,
            max_new=0, batch=GEN_BATCH, per_call=()):
        """trained: tokens through forward + backward; forwards: tokens through a no-grad forward;
        generated_rows: sequences sampled, in batches of `batch`, max_new tokens each; per_call: the rows of
        each sampling call, when the stage makes several (their last batches may be smaller)."""
        cfg, a = model.cfg, self.a
        head = 2 * cfg.vocab_size * cfg.n_embd  # FLOPs per token, forward
        t_train = (model.flops_per_token() * (trained + forwards / 3) / (a.train_mfu * PEAK_BF16)
                   + head * (3 * trained + forwards) / (a.head_efficiency * PEAK_FP32))
        t_gen, steps = 0.0, 0
        if generated_rows:
            full, last = divmod(generated_rows, batch)
            for n_batches, rows in ((full, batch), (1 if last else 0, last)):
                steps += n_batches * max_new
                t_gen += n_batches * max_new * decode_step_seconds(model, padded(rows), a)
            for rows in per_call or (generated_rows,):
                for b in {min(batch, rows), rows % batch or batch}:
                    self.shapes.setdefault((cfg.n_layer, cfg.n_embd, padded(b)), set()).add(process)
        flops = model.flops_per_token() * (trained + forwards / 3)
        self.rows.append((stage, flops, generated_rows * max_new, steps, t_train, t_gen))

    def compile_seconds(self) -> tuple[int, float]:
        """(compiles, seconds): each shape cold in the first process that meets it, warm in every later one."""
        n = sum(len(p) for p in self.shapes.values())
        return n, sum(self.a.compile_cold + (len(p) - 1) * self.a.compile_warm for p in self.shapes.values())

    def total(self) -> float:
        return sum(r[4] + r[5] for r in self.rows) + self.compile_seconds()[1]

    def table(self) -> str:
        n, compile_s = self.compile_seconds()
        rows = self.rows + [(f"compiling the decode step ({len(self.shapes)} shapes, {n} compiles)", 0, 0, 0, 0,
                             compile_s)]
        lines = ["| stage | train FLOPs | tokens generated (at most) | decode steps | train (s) | generate (s) "
                 "| total (s) |", "|---|---|---|---|---|---|---|"]
        for stage, flops, gen, steps, t_train, t_gen in rows:
            lines.append(f"| {stage} | {flops:.2e} | {gen / 1e6:.1f}M | {steps:,} | {t_train:.0f} | {t_gen:.0f} | "
                         f"{t_train + t_gen:.0f} |")
        total = self.total()
        lines.append(f"| **all** | {sum(r[1] for r in rows):.2e} | {sum(r[2] for r in rows) / 1e6:.0f}M | "
                     f"{sum(r[3] for r in rows):,} | {sum(r[4] for r in rows):.0f} | "
                     f"{sum(r[5] for r in rows):.0f} | **{total:.0f} ({total / 60:.0f} min)** |")
        return "\n".join(lines)


def grpo(est: Estimate, stage: str, model: Transformer, cfg, steps: int, process: str):
    """steps GRPO steps: a rollout of prompts x group rows, then mu passes of forward + backward (old
    log-probs, when mu x minibatches > 1, are a no-grad forward in the update's chunks), and the reference
    log-probs' forward when kl_coef > 0."""
    rows, seq = cfg.prompts_per_step * cfg.group_size, PROMPT + cfg.max_new_tokens
    extra = (cfg.mu * cfg.minibatches > 1) + (cfg.kl_coef > 0)
    est.add(stage, model, process, trained=steps * cfg.mu * rows * seq, forwards=steps * extra * rows * seq,
            generated_rows=steps * rows, max_new=cfg.max_new_tokens, batch=rows)


def speedrun(a: Assumptions, preset: str) -> tuple[Estimate, Transformer, Transformer]:
    est = Estimate(a)
    pre = pretrain.PretrainConfig(**pretrain.PRESETS[preset])
    vocab = pre.vocab_size + 8  # BPE ranks, then the special tokens
    with torch.device("meta"):
        model = Transformer(model_config(preset, vocab_size=vocab))
        student = Transformer(model_config(f"{preset}-student", vocab_size=vocab))
    n_tasks = len(SUITES[pre.suite])

    for name, m in (("pretrain", model), ("pretrain student", student)):
        est.add(name, m, name, trained=pre.max_steps * pre.batch_size * m.cfg.block_size)

    zero = train_zero.ZeroConfig(**train_zero.PRESETS[preset])
    grpo(est, "R1-Zero: GRPO", model, zero, zero.steps, "train_zero")
    evals = zero.steps // zero.eval_every + 1
    dev_rows = n_tasks * zero.eval_problems * zero.eval_k
    est.add("R1-Zero: dev checks", model, "train_zero", generated_rows=evals * dev_rows, max_new=zero.max_new_tokens,
            per_call=(dev_rows,))

    r1 = train_r1.R1Config(**train_r1.PRESETS[preset])
    seq = PROMPT + r1.max_new_tokens
    est.add("R1 cold start: sampling + SFT", model, "train_r1", generated_rows=r1.cold_prompts * r1.cold_samples,
            max_new=r1.max_new_tokens, trained=r1.sft_epochs * r1.cold_examples * seq)
    grpo(est, "R1 reasoning RL", model, r1, r1.rl_steps, "train_r1")
    rs_examples = r1.rs_prompts * r1.rs_samples * (1 + 1 / r1.reasoning_ratio)  # at most, with the chat data
    est.add("R1 rejection sampling + SFT", model, "train_r1", generated_rows=r1.rs_prompts * r1.rs_samples,
            max_new=r1.max_new_tokens, trained=r1.sft_epochs * rs_examples * seq)
    est.add("R1 reward model", model, "train_r1", trained=r1.rm_steps * 2 * r1.rm_batch_size * seq)
    grpo(est, "R1 all-scenario RL", model, r1, r1.final_steps, "train_r1")
    r1_dev = n_tasks * r1.eval_problems * r1.eval_k
    est.add("R1 dev checks (R1-Zero and 4 stages, en + zh)", model, "train_r1",
            generated_rows=5 * 2 * r1_dev, max_new=r1.max_new_tokens, per_call=(r1_dev,))

    dc = distill.DistillConfig(**distill.PRESETS[preset])
    est.add("distill: teacher samples", model, "distill", generated_rows=dc.prompts * dc.samples,
            max_new=dc.max_new_tokens)
    est.add("distill: student SFT", student, "distill",
            trained=dc.epochs * dc.prompts * dc.samples * (1 + 1 / dc.reasoning_ratio) * (PROMPT + dc.max_new_tokens))
    est.add("distill: dev check", student, "distill", generated_rows=2 * n_tasks * dc.eval_problems * dc.eval_k,
            max_new=dc.max_new_tokens, per_call=(n_tasks * dc.eval_problems * dc.eval_k,))
    grpo(est, "student RL only", student, zero, zero.steps, "student_zero")
    est.add("student RL only: dev checks", student, "student_zero", generated_rows=evals * dev_rows,
            max_new=zero.max_new_tokens, per_call=(dev_rows,))

    ev = eval_script.EvalConfig(**eval_script.PRESETS[preset])
    # speedrun.sh evaluates base, zero and the four R1 stages (the teacher's size), student and student_zero,
    # in one process: a checkpoint of a shape already compiled re-records its graphs only
    for m, n_ckpts in ((model, 6), (student, 2)):  # per benchmark and language: k samples, then greedy
        est.add(f"eval.py ({n_ckpts} checkpoints of {m.num_params() / 1e6:.0f}M, en + zh, k + greedy)", m, "eval",
                generated_rows=n_ckpts * n_tasks * 2 * ev.n_problems * (ev.k + 1), max_new=ev.max_new_tokens,
                batch=ev.batch_size, per_call=(ev.n_problems * ev.k, ev.n_problems))
    return est, model, student


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gpu")
    args = p.parse_args()
    runs = [speedrun(a, args.preset) for a in RANGE]
    model, student = runs[0][1], runs[0][2]
    totals = [est.total() / 60 for est, _, _ in runs]
    print(f"speedrun estimate, preset {args.preset}, one H100 SXM: model {model.num_params() / 1e6:.1f}M parameters, "
          f"student {student.num_params() / 1e6:.1f}M: **{min(totals):.0f}-{max(totals):.0f} min**\n")
    for est, _, _ in runs:
        a = est.a
        print(f"## {a.name}: body matmuls at {a.train_mfu:.0%} MFU of {PEAK_BF16 / 1e12:.0f} TFLOP/s (eager), the "
              f"float32 head at {a.head_efficiency:.0%} of {PEAK_FP32 / 1e12:.0f} TFLOP/s; a decode step the "
              f"longer of {a.step_floor * 1e3:.2f} ms and its reads at {a.bandwidth:.0%} of "
              f"{HBM / 1e12:.2f} TB/s; {a.compile_cold} s to compile a decode shape, {a.compile_warm} s again in a "
              f"later process; prompts of {PROMPT} tokens\n")
        print(est.table() + "\n")


if __name__ == "__main__":
    main()
