"""Peak memory of every stage at the toy, cpu and gpu presets: r1mini/memory.py's estimate, part by part,
beside the measured peak, and the micro-batches auto_micro_batch picks for the gpu preset on a 24 GiB card.

The batch shapes come from each script's own presets (imported, so they stay in step): pretrain.py
(batch_size / grad_accum rows of block_size tokens), train_zero.py and train_r1.py's GRPO stages
(prompts_per_step * group_size rows of prompt + max_new_tokens), train_r1.py's SFT stages (sft_batch_size
rows, padded to at most block_size: the worst case is taken) and distill.py (the teacher's generation
batches of batch_gen rows, the student's SFT). The vocabulary is the preset's BPE ranks + the 5 special
tokens. Prompt lengths are the longest of 300 prompts encoded with a tokenizer trained on the preset's suite
(see PROMPT_TOKENS).

Measured, at the same shapes with random weights and tokens, on a real step of the code each stage runs
(pretrain.train_step, rl.grpo_update, sampling.generate under autocast as in rl.rollout, a no-grad
reference forward as in rl.grpo_update): on CUDA, torch.cuda.max_memory_allocated; on the CPU, for the
presets in --measure, the weights and optimizer state already resident plus the peak of the allocations the
profiler records during the step, and the bytes the forward saves for the backward (r1mini.memory's
measure_* helpers). Generation runs without stop tokens, so no finished rows are dropped: the estimate
counts the copy that dropping them makes (half the cache) and is that much above the measurement. The CPU
profiler misses the frees of tensors allocated before it started: when zero_grad frees the previous step's
gradients and a later micro-batch allocates them again, it counts them twice (the micro-batched update's
measurement is up to one gradient-size high).

    OMP_NUM_THREADS=2 python benchmarks/bench_memory.py                # measures toy and cpu on the CPU
    python benchmarks/bench_memory.py --device cuda --measure toy,cpu,gpu
"""
import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from distill import PRESETS as DISTILL, DistillConfig  # noqa: E402
from pretrain import PRESETS as PRETRAIN, PretrainConfig, train_step  # noqa: E402
from r1mini.device import autocast, cuda_paths, pick_device  # noqa: E402
from r1mini.grpo import logprobs_from_logits  # noqa: E402
from r1mini.memory import (GiB, auto_micro_batch, estimate_peak_bytes, measure_peak_bytes,  # noqa: E402
                           measure_saved_bytes)
from r1mini.model import Transformer, model_config  # noqa: E402
from r1mini.rl import GRPOConfig, Policy, Rollout, grpo_update  # noqa: E402
from r1mini.sampling import generate  # noqa: E402
from r1mini.tokenizer import SPECIAL_TOKENS  # noqa: E402
from train_r1 import PRESETS as R1, R1Config  # noqa: E402
from train_zero import PRESETS as ZERO, ZeroConfig  # noqa: E402

# the longest of 300 training prompts (English and Chinese) in tokens: R1-Zero's template, R1's chat format;
# tokenizers trained on 1000 / 2000 / 4000 documents of the suite (gpu: 1363 ranks, not 2048, so an upper bound)
PROMPT_TOKENS = {"toy": (108, 27), "cpu": (47, 16), "gpu": (65, 34)}
BUDGET = 24 * GiB

p = argparse.ArgumentParser()
p.add_argument("--presets", default="toy,cpu,gpu")
p.add_argument("--measure", default=None, help="presets to measure (default: toy,cpu on the CPU, all on CUDA)")
p.add_argument("--device", default="cpu")
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)
device = pick_device(args.device)
measure = (args.measure or ("toy,cpu,gpu" if device.type == "cuda" else "toy,cpu")).split(",")


@dataclass
class Stage:
    name: str
    model: str  # model preset
    vocab: int
    kind: str  # train, score, generate (r1mini.memory.KINDS)
    rows: int  # rows in one forward (what the estimate sees)
    seq_len: int
    prompt_len: int = 0
    loss: str = "ce"  # train: "ce" (pretraining, SFT) or "grpo"
    micro: int = 0  # grpo: micro_batch_size; the measured update then takes batch rows in chunks of rows
    batch: int = 0
    options: dict = field(default_factory=dict)  # estimate_peak_bytes's optimizer_state, ref_model

    def config(self):
        return model_config(self.model, vocab_size=self.vocab)


def stages(preset: str) -> list[Stage]:
    pre, zero = PretrainConfig(**PRETRAIN[preset]), ZeroConfig(**ZERO[preset])
    r1, dist = R1Config(**R1[preset]), DistillConfig(**DISTILL[preset])
    model = pre.model
    vocab = pre.vocab_size + len(SPECIAL_TOKENS)
    block = model_config(model).block_size
    zero_prompt, chat_prompt = PROMPT_TOKENS[preset]
    zero_rows, r1_rows = zero.prompts_per_step * zero.group_size, r1.prompts_per_step * r1.group_size
    zero_len = min(block, zero_prompt + zero.max_new_tokens)  # generate stops at block_size
    r1_len = min(block, chat_prompt + r1.max_new_tokens)
    rollout = dict(optimizer_state=True)  # the previous update's gradients and AdamW state stay
    out = [Stage("pretrain", model, vocab, "train", pre.batch_size // max(1, pre.grad_accum), block),  # 0: fewest
           Stage("R1-Zero rollout", model, vocab, "generate", zero_rows, zero_len, zero_prompt, options=rollout),
           Stage("R1-Zero GRPO update", model, vocab, "train", zero_rows, zero_len, zero_prompt, loss="grpo")]
    micro = auto_micro_batch(model_config(model, vocab_size=vocab), "train", zero_rows, zero_len, BUDGET,
                             bf16=True)
    micro = micro if micro < zero_rows else zero_rows // 4  # toy and cpu fit whole: show quarters
    out += [Stage(f"  in micro-batches of {micro}", model, vocab, "train", micro, zero_len, zero_prompt,
                  loss="grpo", micro=micro, batch=zero_rows),
            Stage("  reference log-probs (kl_coef > 0)", model, vocab, "score", zero_rows, zero_len,
                  options=dict(optimizer_state=True, ref_model=True)),
            Stage("R1 SFT (cold start, rejection)", model, vocab, "train", r1.sft_batch_size, block),
            Stage("R1 rollout (both RL stages)", model, vocab, "generate", r1_rows, r1_len, chat_prompt,
                  options=rollout),
            Stage("R1 GRPO update", model, vocab, "train", r1_rows, r1_len, chat_prompt, loss="grpo"),
            Stage("distill: teacher generation", model, vocab, "generate", dist.batch_gen,
                  min(block, chat_prompt + dist.max_new_tokens), chat_prompt),
            Stage("distill: student SFT", f"{model}-student", vocab, "train", dist.batch_size,
                  model_config(f"{model}-student").block_size)]
    return out


# -- measuring ---------------------------------------------------------------------------------------------------

def resident_bytes(*objects) -> int:
    """What is allocated before a step: on CUDA all of it; on the CPU the models' parameters, gradients and
    buffers and the optimizers' state (each storage once)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    tensors = []
    for obj in objects:
        if isinstance(obj, torch.nn.Module):
            tensors += [*obj.parameters(), *(q.grad for q in obj.parameters() if q.grad is not None), *obj.buffers()]
        else:
            tensors += [t for state in obj.state.values() for t in state.values() if torch.is_tensor(t)]
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def one_update(model, optimizer):
    """Give every parameter a gradient and AdamW its moments, as after a training step."""
    model(torch.zeros(1, 2, dtype=torch.long, device=device))[0].float().sum().backward()
    optimizer.step()


def measured(stage: Stage, bf16: bool) -> tuple[int, int | None]:
    """(peak bytes of the stage's real step, bytes its forward saves for the backward or None)."""
    torch.manual_seed(0)
    cfg = stage.config()
    model = Transformer(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rows = stage.batch or stage.rows
    ids = torch.randint(cfg.vocab_size, (rows, stage.seq_len), device=device)
    targets = torch.randint(cfg.vocab_size, (rows, stage.seq_len), device=device)
    extra, saved = [], None
    if stage.kind == "generate":
        if stage.options.get("optimizer_state"):
            one_update(model, optimizer)
        prompts = ids[:, :stage.prompt_len].tolist()

        def step():
            with autocast(device):  # rl.rollout's: the bf16 weight copies stay for the whole rollout
                generate(model, prompts, stage.seq_len - stage.prompt_len)
    elif stage.kind == "score":
        one_update(model, optimizer)
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        extra = [ref]

        def step():
            with torch.no_grad(), autocast(device):
                logprobs_from_logits(ref(ids)[:, :-1], ids[:, 1:])
    elif stage.loss == "grpo":
        mask = torch.zeros(rows, stage.seq_len - 1, dtype=torch.bool, device=device)
        mask[:, stage.prompt_len - 1:] = True
        rollout = Rollout(ids, mask, [""] * rows, [stage.seq_len - stage.prompt_len] * rows)
        policy = Policy(model, optimizer, forward=model)
        grpo = GRPOConfig(max_new_tokens=stage.seq_len - stage.prompt_len, micro_batch_size=stage.micro)
        advantages = torch.randn(rows, device=device)
        keep = torch.ones(rows, dtype=torch.bool, device=device)

        def step():
            grpo_update(policy, rollout, advantages, keep, grpo)
    else:
        def step():
            train_step(model, model, optimizer, ids, targets, PretrainConfig(grad_accum=1), device)  # one micro-batch

    if stage.kind == "train":
        step()  # the gradients and AdamW state exist from now on, as in every step after the first
        if device.type == "cpu":  # one chunk's forward and what its loss saves (log-softmax or logits)
            chunk = ids[:stage.rows]
            with autocast(device):
                saved = measure_saved_bytes(lambda: logprobs_from_logits(model(chunk)[:, :-1], chunk[:, 1:])
                                            if stage.loss == "grpo" else model(chunk, targets[:stage.rows]),
                                            model)["activations"]
    peak = resident_bytes(model, optimizer, *extra) + measure_peak_bytes(step, device)
    return peak, saved


# -- the table ---------------------------------------------------------------------------------------------------

def size(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / GiB:.2f}G" if n >= GiB else f"{n / 2 ** 20:.1f}M"


header = (f"{'preset':6s} {'stage':36s} {'kind':8s} {'rows x T':>10s} {'dtype':5s} {'weights':>8s} {'grad+opt':>8s} "
          f"{'activ.':>8s} {'logits':>8s} {'cache':>8s} {'working':>8s} {'TOTAL':>8s} {'measured':>8s} "
          f"{'saved est':>9s} {'saved':>8s}")
how = "CUDA max_memory_allocated" if device.type == "cuda" else "the CPU profiler's allocations"
print(f"device {device}; sizes in GiB (G) or MiB (M); measured ({how}) for the presets {', '.join(measure)}")
print(header)
for preset in args.presets.split(","):
    for stage in stages(preset):
        bf16 = preset == "gpu" or cuda_paths(device)  # the gpu preset runs on CUDA, under bf16 autocast
        cfg = stage.config()
        est = estimate_peak_bytes(cfg, stage.kind, stage.rows, stage.seq_len, bf16=bf16,
                                  prompt_len=stage.prompt_len or None, **stage.options)
        peak = saved = None
        if preset in measure and bf16 == cuda_paths(device):
            try:
                peak, saved = measured(stage, bf16)
            except torch.cuda.OutOfMemoryError:
                peak = "OOM"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        # what the model and the loss save: activations, and the log-softmax (or logits) and targets
        saved_est = stage.rows * stage.seq_len * (4 * cfg.vocab_size + 8) + est["activations"] \
            if stage.kind == "train" else None
        print(f"{preset:6s} {stage.name:36s} {stage.kind:8s} {f'{stage.rows} x {stage.seq_len}':>10s} "
              f"{'bf16' if bf16 else 'fp32':5s} {size(est['weights'] + est['weight_copies']):>8s} "
              f"{size(est['grads'] + est['optimizer']):>8s} {size(est['activations']):>8s} "
              f"{size(est['logits']):>8s} {size(est['cache']):>8s} {size(est['working']):>8s} "
              f"{size(est['total']):>8s} {peak if isinstance(peak, str) else size(peak):>8s} "
              f"{size(saved_est) if saved is not None else '-':>9s} {size(saved):>8s}", flush=True)

print(f"\nauto_micro_batch at the gpu preset (bf16) for a {BUDGET / GiB:.0f} GiB budget (80% of it used):")
print(f"{'stage':36s} {'rows x T':>10s} {'micro-batch':>11s} {'chunks':>6s} {'estimate':>9s} {'whole batch':>11s}")
for stage in stages("gpu"):
    if stage.micro:
        continue
    cfg = stage.config()
    micro = auto_micro_batch(cfg, stage.kind, stage.rows, stage.seq_len, BUDGET, bf16=True,
                             prompt_len=stage.prompt_len or None, **stage.options)
    at = estimate_peak_bytes(cfg, stage.kind, micro, stage.seq_len, bf16=True, prompt_len=stage.prompt_len or None,
                             **stage.options)
    whole = estimate_peak_bytes(cfg, stage.kind, stage.rows, stage.seq_len, bf16=True,
                                prompt_len=stage.prompt_len or None, **stage.options)
    print(f"{stage.name.strip():36s} {f'{stage.rows} x {stage.seq_len}':>10s} {micro:>11d} "
          f"{-(-stage.rows // micro):>6d} {size(at['total']):>9s} {size(whole['total']):>11s}")
