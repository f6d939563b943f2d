"""A GRPO step of r1mini against TRL's GRPOTrainer, alternating in one process, at one shape: a 0.8M-parameter
Llama-shaped model (the cpu preset: 4 layers, width 128, 4 query / 2 key-value heads, SwiGLU 352, vocabulary
773, random weights), 8 prompts x 8 samples, 96 new tokens at temperature 1, one on-policy update (mu 1,
no KL, no gradient checkpointing, the GRPO loss averaged per sequence, std-scaled group advantages) with
AdamW. Both sides start from the same weights (exported with r1mini.hf.save_pretrained, loaded by
transformers' LlamaForCausalLM), the same tokenizer and the same R1-Zero prompts, and score with the same
rule reward (r1mini.rewards.zero_rewards). With random weights a row almost never samples the stop token,
so both sides generate 8 x 8 x 96 tokens a step.

TRL's step is timed from its callback's on_step_begin to on_step_end (generation, reward, update), and each
of its steps is followed by one r1mini step (rollout, reward, update; timed the same way), so the two
alternate under the same machine load; the first step of each is a warm-up, not counted. Needs `trl`
(which brings transformers), never a dependency of r1mini: install it into a throwaway environment that sees
r1mini's own packages (a .pth file naming their site-packages keeps pip from fetching another torch):

    python -m venv /tmp/trlvenv
    python -c "import site; print(site.getsitepackages()[0])" > /tmp/trlvenv/lib/python3.11/site-packages/r1mini.pth
    /tmp/trlvenv/bin/pip install trl
    OMP_NUM_THREADS=2 /tmp/trlvenv/bin/python benchmarks/bench_trl.py [--steps 6] [--threads 2]
"""
import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_grpo_step import zero_step  # noqa: E402  (this folder is on the path: the script runs from it)
from r1mini.corpus import corpus_documents  # noqa: E402
from r1mini.formats import zero_prompt  # noqa: E402
from r1mini.hf import save_pretrained  # noqa: E402
from r1mini.model import Transformer, model_config  # noqa: E402
from r1mini.rewards import zero_rewards  # noqa: E402
from r1mini.rl import GRPOConfig, Policy  # noqa: E402
from r1mini.tasks import suite  # noqa: E402
from r1mini.tokenizer import Tokenizer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=6, help="timed steps of each, after one warm-up step each")
p.add_argument("--prompts", type=int, default=8)
p.add_argument("--group_size", type=int, default=8)
p.add_argument("--max_new_tokens", type=int, default=96)
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
try:
    import datasets
    import trl
    from transformers import AutoTokenizer, LlamaForCausalLM, TrainerCallback
except ImportError as e:
    raise SystemExit(f"this benchmark compares with TRL, which is not installed ({e}): pip install trl")
warnings.filterwarnings("ignore")
torch.set_num_threads(args.threads)

tasks = suite("cpu")
tok = Tokenizer.train(corpus_documents(tasks, 2000, seed=0, split="train"), 768)
torch.manual_seed(0)
model = Transformer(model_config("cpu", vocab_size=tok.vocab_size))
rng = random.Random(0)
n_problems = args.prompts * (args.steps + 1)
problems = [rng.choice(list(tasks.values())).sample(rng, "train", "en") for _ in range(n_problems)]
by_prompt = {zero_prompt(q.question): q for q in problems}  # TRL hands the reward function prompt texts
print(f"{model.num_params():,} params, {args.prompts} prompts x {args.group_size} samples, {args.max_new_tokens} "
      f"new tokens, {args.threads} threads; torch {torch.__version__}, trl {trl.__version__}")


def reward(prompts, completions, **kwargs):  # TRL's reward signature, our R1-Zero rule reward
    return zero_rewards(completions, [by_prompt[p] for p in prompts])[0]


# -- r1mini: one step as rl.grpo_step runs it (bench_grpo_step.zero_step: rollout, rewards, one update) -------
cfg = GRPOConfig(group_size=args.group_size, max_new_tokens=args.max_new_tokens, lr=1e-4)
policy = Policy(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99)), forward=model)
generator = torch.Generator().manual_seed(0)
ours = {"step": [], "generate": [], "tokens": []}


def r1mini_step(batch):
    t_gen, t_score, t_train, tokens = zero_step(policy, tok, batch, cfg, generator)
    ours["step"].append(t_gen + t_score + t_train)
    ours["generate"].append(t_gen)
    ours["tokens"].append(tokens)


# -- TRL: the same weights and tokenizer through transformers, GRPOTrainer with the same options -------------
theirs = {"step": []}


class AlternateWithR1mini(TrainerCallback):
    """Times each TRL step, then runs one r1mini step on the next prompts."""
    def on_step_begin(self, args_, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args_, state, control, **kw):
        theirs["step"].append(time.perf_counter() - self.t0)
        step = len(theirs["step"]) - 1
        r1mini_step(problems[step * args.prompts:(step + 1) * args.prompts])


with tempfile.TemporaryDirectory() as tmp:
    save_pretrained(model, tok, tmp)
    hf_model = LlamaForCausalLM.from_pretrained(tmp, torch_dtype=torch.float32)
    hf_tok = AutoTokenizer.from_pretrained(tmp)
    hf_tok.pad_token = hf_tok.eos_token
    hf_model.generation_config.pad_token_id = hf_tok.pad_token_id
    hf_model.generation_config.eos_token_id = hf_tok.eos_token_id
    train = datasets.Dataset.from_dict({"prompt": [zero_prompt(q.question) for q in problems]})
    trl_cfg = trl.GRPOConfig(
        output_dir=tmp, max_steps=args.steps + 1, per_device_train_batch_size=args.prompts * args.group_size,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens, temperature=1.0,
        learning_rate=1e-4, beta=0.0, num_iterations=1, loss_type="grpo", scale_rewards="group",
        gradient_checkpointing=False, use_cpu=True, bf16=False, shuffle_dataset=False, save_strategy="no",
        report_to="none", logging_steps=10_000, disable_tqdm=True, dataloader_num_workers=0)
    trainer = trl.GRPOTrainer(model=hf_model, reward_funcs=reward, args=trl_cfg, train_dataset=train,
                              processing_class=hf_tok, callbacks=[AlternateWithR1mini()])
    trainer.train()


def spread(xs):
    xs = xs[1:]  # the first of each is a warm-up
    return f"median {statistics.median(xs):.3f} s (range {min(xs):.3f}-{max(xs):.3f}, {len(xs)} steps)"


print(f"TRL GRPOTrainer step: {spread(theirs['step'])}")
print(f"r1mini GRPO step:     {spread(ours['step'])}; of which generate {spread(ours['generate'])}")
print(f"r1mini new tokens per step: {ours['tokens'][1:]}")
ratios = [t / o for t, o in zip(theirs["step"][1:], ours["step"][1:])]
print(f"TRL / r1mini, step by step: {' '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}x")
