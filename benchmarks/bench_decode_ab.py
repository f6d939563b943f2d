"""Decoding speed of this checkout against another (an older commit, a branch), alternating: A, B, A, B ...
each in a fresh process, so that both see the same machine load. A busy machine slows whatever runs, and two
runs made minutes apart differ by more than most changes; alternating, with the median and the range of
several rounds, is what tells a change from the load.

    git worktree add /tmp/before HEAD~3        # or: git archive HEAD~3 | tar -x -C /tmp/before
    OMP_NUM_THREADS=1 python benchmarks/bench_decode_ab.py /tmp/before [--rounds 5] [--shape trl]
    OMP_NUM_THREADS=1 python benchmarks/bench_decode_ab.py /tmp/before --init out/base   # real rollouts

Each process times `generate` after one warm-up call, three times, and reports the median, per decode step,
of its CPU time (time.process_time: what the process itself ran, the least disturbed by other jobs at one
thread; with more threads it adds up their spinning too) and of its wall time. Shapes as in
profile_decode.py: random weights and every row decoding all `new` tokens, or with --init a checkpoint's
R1-Zero rollouts (8 prompts x 8 samples, up to 208 tokens, stopping at the end token), per rollout.
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

# run in each tree by `python -c`, with the tree first on sys.path
TIMER = r"""
import json, random, sys, time, torch
sys.path.insert(0, sys.argv[1])
from r1mini.sampling import generate
threads, new, init = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
if init:
    from r1mini.checkpoint import load_checkpoint
    from r1mini.formats import zero_prompt
    from r1mini.tasks import suite
    model, tok, _ = load_checkpoint(init)
    tasks, rng = suite("cpu"), random.Random(0)
    problems = [rng.choice(list(tasks.values())).sample(rng, "train", "en") for _ in range(8)]
    prompts = [tok.encode(zero_prompt(q.question)) for q in problems for _ in range(8)]
    kw = dict(stop_ids=[tok.eot_id], pad_id=tok.eot_id)
else:
    from r1mini.model import Transformer, model_config
    torch.manual_seed(0)
    model = Transformer(model_config("cpu", vocab_size=773))
    g = torch.Generator().manual_seed(0)
    distinct = [torch.randint(0, 773, (37 + i % 7,), generator=g).tolist() for i in range(8)]
    prompts = [p for p in distinct for _ in range(8)]  # 8 samples of each prompt, as GRPO rolls out
    kw = {}
model.eval()
gen = torch.Generator().manual_seed(0)
generate(model, prompts, new, generator=gen, **kw)
cpu, wall, steps = [], [], []
for _ in range(3):
    gen.manual_seed(1)  # the same draws every time: the same tokens, the same steps
    c0, w0 = time.process_time(), time.perf_counter()
    out = generate(model, prompts, new, generator=gen, **kw)
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - w0)
    steps.append(max(map(len, out)))
print(json.dumps({"cpu": sorted(cpu)[1], "wall": sorted(wall)[1], "steps": steps[0], "tokens": sum(map(len, out))}))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("other", help="the other checkout's root directory")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shape", choices=["trl", "cpu"], default="trl", help="random weights: 96 or 208 new tokens")
    p.add_argument("--init", default="", help="a checkpoint: its R1-Zero rollouts instead of random weights")
    args = p.parse_args()
    new = 208 if args.init or args.shape == "cpu" else 96
    trees = {"this": str(HERE), "other": str(Path(args.other).resolve())}
    results = {name: [] for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            out = subprocess.run([sys.executable, "-c", TIMER, tree, str(args.threads), str(new), args.init],
                                 capture_output=True, text=True, check=True)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {name:5s} {results[name][-1]}", flush=True)
    unit, per = ("s per rollout", 1) if args.init else ("ms per decode step", 1000)
    print(f"\n{unit}, median [range] of {args.rounds} rounds, {args.threads} thread(s):")
    for name, runs in results.items():
        for key in ("cpu", "wall"):
            xs = [run[key] * per / (1 if args.init else run["steps"]) for run in runs]
            print(f"  {name:5s} {key:4s} {statistics.median(xs):8.3f} [{min(xs):.3f}-{max(xs):.3f}]")
    mine = statistics.median(run["cpu"] for run in results["this"])
    theirs = statistics.median(run["cpu"] for run in results["other"])
    print(f"this checkout's CPU time is {mine / theirs:.3f} of the other's ({theirs / mine:.2f}x as fast); same "
          f"tokens: {[r['tokens'] for r in results['this']] == [r['tokens'] for r in results['other']]}")


if __name__ == "__main__":
    main()
