"""One train_zero.py-style GRPO step at the cpu preset (8 prompts x 8 samples, up to 128 new tokens), split
into generate / score / train seconds. A randomly initialised cpu-preset model and a tokenizer trained in
seconds on a small corpus stand in for the base checkpoint (or pass --init out/base for the real one).

    OMP_NUM_THREADS=2 python benchmarks/bench_grpo_step.py [--init out/base] [--steps 3]
"""
import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r1mini.checkpoint import load_checkpoint  # noqa: E402
from r1mini.corpus import corpus_documents  # noqa: E402
from r1mini.formats import zero_prompt  # noqa: E402
from r1mini.grpo import group_advantages  # noqa: E402
from r1mini.model import Transformer, model_config  # noqa: E402
from r1mini.rewards import zero_rewards  # noqa: E402
from r1mini.rl import GRPOConfig, Policy, grpo_update, rollout  # noqa: E402
from r1mini.tasks import suite  # noqa: E402
from r1mini.tokenizer import Tokenizer  # noqa: E402



def zero_step(policy: Policy, tok, problems: list, cfg: GRPOConfig, generator: torch.Generator):
    """One R1-Zero GRPO step as rl.grpo_step runs it (rollout, rule rewards, group advantages, one update), on
    `problems` with cfg.group_size samples each. Returns the seconds it generated, scored and trained, and the
    new tokens it generated (bench_trl.py times r1mini's side with it too)."""
    model = policy.model
    t0 = time.perf_counter()
    model.eval()
    ro = rollout(model, tok, [tok.encode(zero_prompt(q.question)) for q in problems], cfg.group_size,
                 max_new_tokens=cfg.max_new_tokens, stop_ids=[tok.eot_id], generator=generator)
    model.train()
    t1 = time.perf_counter()
    rewards = torch.tensor(zero_rewards(ro.completions, [q for q in problems for _ in range(cfg.group_size)])[0])
    advantages = group_advantages(rewards, cfg.group_size)
    t2 = time.perf_counter()
    grpo_update(policy, ro, advantages, torch.ones_like(rewards, dtype=torch.bool), cfg)
    return t1 - t0, t2 - t1, time.perf_counter() - t2, sum(ro.lengths)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--init", default="")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group_size", type=int, default=8)
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tasks = suite("cpu")
    if args.init:
        model, tok, _ = load_checkpoint(args.init)
    else:
        tok = Tokenizer.train(corpus_documents(tasks, 2000, seed=0, split="train"), 768)
        torch.manual_seed(0)
        model = Transformer(model_config("cpu", vocab_size=tok.vocab_size))
    cfg = GRPOConfig(group_size=args.group_size, max_new_tokens=args.max_new_tokens, lr=3e-4)
    policy = Policy(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr), forward=model)
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    print(f"{model.num_params():,} params, {args.prompts} prompts x {args.group_size} samples, "
          f"<= {args.max_new_tokens} new tokens, {args.threads} threads")
    print(f"{'step':>4s} {'generate':>9s} {'score':>7s} {'train':>7s} {'new tokens':>10s}")
    for step in range(args.steps):
        problems = [rng.choice(list(tasks.values())).sample(rng, "train", "en") for _ in range(args.prompts)]
        t_gen, t_score, t_train, tokens = zero_step(policy, tok, problems, cfg, gen)
        print(f"{step:4d} {t_gen:9.2f} {t_score:7.3f} {t_train:7.2f} {tokens:10d}")


if __name__ == "__main__":
    main()
