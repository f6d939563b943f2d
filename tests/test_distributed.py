"""Tests for r1mini.distributed. In one process every helper is the identity or a no-op (gradient accumulation
still holds back DDP's all-reduce until the last micro-batch: checked with a stand-in). Data parallel on CPU
(gloo): the replica check that every training script ends with catches replicas that differ, ranks exit
cleanly, a GRPO update and SFT under DDP keep the replicas identical, and train_zero.py and train_r1.py under
torchrun keep both replicas identical."""
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from r1mini import distributed
from r1mini.checkpoint import load_checkpoint
from r1mini.distributed import (accumulate, check_replicas_in_sync, is_main, map_striped, param_checksum, print0,
                                rank_and_world, report_replicas_in_sync, sum_over_ranks, teardown_distributed,
                                training_forward, unwrap)
from r1mini.model import Transformer, model_config
from r1mini.optim import apply_update
from r1mini.rl import GRPOConfig, Policy, Rollout, grpo_update, plain_update

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# -- one process: every helper is the identity or a no-op ------------------------------------------------

class NoSyncRecorder(torch.nn.Module):
    """Stands in for a DDP-wrapped module: records when its no_sync() context is entered and left."""

    def __init__(self):
        super().__init__()
        self.inside, self.entered = False, 0

    @contextlib.contextmanager
    def no_sync(self):
        self.inside, self.entered = True, self.entered + 1
        try:
            yield
        finally:
            self.inside = False


def test_accumulate_holds_back_the_all_reduce_until_the_last_chunk():
    forward = NoSyncRecorder()
    seen = [(i, chunk, forward.inside) for i, chunk in accumulate(forward, ["a", "b", "c", "d"])]
    # every chunk once, in order, with its index; inside no_sync for all but the last (its backward all-reduces)
    assert seen == [(0, "a", True), (1, "b", True), (2, "c", True), (3, "d", False)]
    assert forward.entered == 3 and not forward.inside  # entered once per held-back chunk, and left again
    forward = NoSyncRecorder()
    assert [(i, c, forward.inside) for i, c in accumulate(forward, ["only"])] == [(0, "only", False)]
    assert forward.entered == 0 and list(accumulate(forward, [])) == []
    # a module without no_sync (one process, no DDP) simply gets every chunk
    assert list(accumulate(torch.nn.Linear(2, 2), [1, 2, 3])) == [(0, 1), (1, 2), (2, 3)]


def test_one_process_helpers_are_identities(capsys):
    assert rank_and_world() == (0, 1) and is_main()
    values = sum_over_ranks([1, 2.5, True, torch.tensor(3.0)], torch.device("cpu"))
    assert values == [1.0, 2.5, 1.0, 3.0] and all(type(v) is float for v in values)
    assert map_striped(lambda xs: [x * 10 for x in xs], [1, 2, 3]) == [10, 20, 30]
    model = torch.nn.Linear(3, 3)
    assert training_forward(model, torch.device("cpu")) is model  # no DDP wrapper in one process
    assert unwrap(model) is model
    assert check_replicas_in_sync(model) == pytest.approx(param_checksum(model).sum().item())
    report_replicas_in_sync(model, "[x] ")  # nothing to check, and nothing printed
    print0("from rank 0")
    assert capsys.readouterr().out == "from rank 0\n"


def test_param_checksum_sees_one_changed_weight():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    b.load_state_dict(a.state_dict())
    assert torch.equal(param_checksum(a), param_checksum(b)) and param_checksum(a).shape == (2, 3)
    with torch.no_grad():
        b.weight[1, 2] += 1e-6
    assert not torch.equal(param_checksum(a), param_checksum(b))
    with torch.no_grad():  # the same values moved to other places: caught by the position-weighted sum
        b.load_state_dict(a.state_dict())
        b.weight.copy_(a.weight.flip(1))
    assert not torch.equal(param_checksum(a)[0], param_checksum(b)[0])
    assert torch.equal(param_checksum(a)[0, :2], param_checksum(b)[0, :2])


# -- two processes -----------------------------------------------------------------------------------------

def torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", *map(str, args)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "base"
    r = subprocess.run([sys.executable, "pretrain.py", "--preset", "toy", "--out", str(out), "--max_steps", "10"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_eval_torchrun_stripes_the_problems(base, tmp_path):
    """eval.py under torchrun: each rank samples its stripe of the problems and rank 0 writes the whole result.
    Greedy decoding does not depend on the sampling seeds, so its accuracy is the one-process run's."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    args = ["--preset", "toy", "--init", base, "--n_problems", 6, "--k", 2, "--show", 0]
    r = subprocess.run([sys.executable, "eval.py", *map(str, args), "--out", str(one)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = torchrun("eval.py", *args, "--out", two, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    alone, striped = (json.loads(f.read_text())[str(base)]["results"] for f in (one, two))
    assert alone.keys() == striped.keys()
    for bench in alone:
        for lang in ("en", "zh"):
            assert striped[bench]["by_lang"][lang]["greedy"] == alone[bench]["by_lang"][lang]["greedy"]
            assert 0 <= striped[bench]["by_lang"][lang]["pass@1"] <= 1


def logged_checksum(stdout: str) -> float:
    m = re.search(r"replicas in sync: parameter checksum (\S+) on 2 rank", stdout)
    assert m, stdout[-2000:]
    return float(m.group(1))


def test_train_zero_torchrun_replicas_stay_identical(base, tmp_path):
    # A toy base never earns the real rewards (every group would tie, the gradient would be zero); this reward
    # depends on the completion's length, so the groups differ and each rank's gradient is its own.
    script = tmp_path / "zero_length_reward.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(ROOT)!r})\nimport train_zero\n"
                      "def length_reward(completions, problems, format_weight=1.0):\n"
                      "    rewards = [float(len(c) % 3 == 0) for c in completions]\n"
                      "    return rewards, {'accuracy': rewards, 'format': [0.0] * len(rewards)}\n"
                      "train_zero.zero_rewards = length_reward\ntrain_zero.main()\n")
    out = tmp_path / "zero"
    r = torchrun(script, "--preset", "toy", "--init", base, "--out", out, "--steps", "3", "--eval_every", "100",
                 "--device", "cpu", "--micro_batch_size", "3")  # each rank's 4 rows in chunks of 3 + 1 (no_sync)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world 2" in r.stdout
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if "mixed_groups" in line]
    assert len(rows) == 3 and max(row["mixed_groups"] for row in rows) > 0  # there was a signal to learn from
    # the checksum the ranks agreed on is the one of the weights rank 0 saved, and the steps moved them
    model, _, meta = load_checkpoint(out)
    assert meta["step"] == 3
    assert logged_checksum(r.stdout) == pytest.approx(param_checksum(model).sum().item(), rel=1e-12)
    start, _, _ = load_checkpoint(base)
    assert not torch.equal(param_checksum(model), param_checksum(start))


def free_address() -> str:
    """A TCP rendezvous on a free local port."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _worker(rank: int, store: str, perturb: bool, results: str):
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    if perturb and rank == 1:
        with torch.no_grad():
            model.blocks[0].attn.wq.weight[3, 5] += 1e-6
    try:
        check_replicas_in_sync(model)
        outcome = "ok"
    except RuntimeError as e:
        outcome = str(e)
    Path(results, str(rank)).write_text(outcome)
    teardown_distributed()


@pytest.mark.parametrize("perturb", [False, True])
def test_replica_check_catches_one_changed_weight(tmp_path, perturb):
    mp.spawn(_worker, args=(free_address(), perturb, str(tmp_path)), nprocs=2)
    outcomes = [(tmp_path / str(r)).read_text() for r in range(2)]
    if perturb:
        assert all("ranks [1]" in o for o in outcomes), outcomes
    else:
        assert outcomes == ["ok", "ok"]


def _exit_worker(rank: int, store: str):
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    torch.manual_seed(0)
    check_replicas_in_sync(torch.nn.Linear(4, 4))  # a collective on tensors that die when it returns
    teardown_distributed()  # then straight to interpreter shutdown, the moment the race used to strike


def test_ranks_exit_cleanly_right_after_a_collective():
    """Leaving right after a collective is when gloo's worker thread may still hold its tensors; releasing them
    during interpreter shutdown aborts the rank (SIGABRT). Measured with this worker: without any teardown 7 of
    40 spawns lost a rank, with teardown_distributed 0 of 40, so 8 spawns catch a missing teardown about 4 times
    in 5. (Its wait matters in the real scripts: train_zero under torchrun aborted 5 times in 60 runs before,
    0 in 150 after.) mp.spawn raises if a rank dies by a signal."""
    for _ in range(8):
        mp.spawn(_exit_worker, args=(free_address(),), nprocs=2)


def _mismatch_worker(rank: int, store: str, case: str, results: str):
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2, timeout=timedelta(seconds=60))
    values, names = [1.0, 2.0], "reward,length"
    if rank == 1 and case == "length":
        values = [1.0, 2.0, 3.0]
    if rank == 1 and case == "names":
        names = "reward,reflect_acc"
    try:
        outcome = str(sum_over_ranks(values, torch.device("cpu"), names=names))
    except RuntimeError as e:
        outcome = str(e)
    Path(results, str(rank)).write_text(outcome)
    teardown_distributed()


@pytest.mark.parametrize("case", ["same", "length", "names"])
def test_sum_over_ranks_refuses_lists_that_differ_by_rank(tmp_path, case):
    """Lists of different lengths used to abort gloo (and hang NCCL); lists of the same length that mean
    different things were summed silently. Now every rank raises the same error, at once."""
    mp.spawn(_mismatch_worker, args=(free_address(), case, str(tmp_path)), nprocs=2)
    outcomes = [(tmp_path / str(r)).read_text() for r in range(2)]
    if case == "same":
        assert outcomes == ["[2.0, 4.0]"] * 2
    else:
        assert all("ranks disagree on what to sum" in o for o in outcomes), outcomes
        assert ("2 to 3 values" in outcomes[0]) == (case == "length")


def _grpo_worker(rank: int, store: str, use_ddp: bool, results: str):
    """Both ranks start from the same weights and take one GRPO step on *different* rollouts."""
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    start = param_checksum(model)
    g = torch.Generator().manual_seed(rank)
    ids = torch.randint(0, 100, (4, 12), generator=g)
    mask = torch.zeros(4, 11, dtype=torch.bool)
    mask[:, 5:] = True
    ro = Rollout(ids, mask, [""] * 4, [6] * 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    forward = torch.nn.parallel.DistributedDataParallel(model) if use_ddp else model
    grpo_update(Policy(model, optimizer, forward), ro, torch.tensor([1.0, -1.0, 0.5, -0.5]),
                torch.ones(4, dtype=torch.bool), GRPOConfig(max_new_tokens=11))
    moved = not torch.equal(param_checksum(model), start)
    try:
        check_replicas_in_sync(model)
        outcome = "in sync"
    except RuntimeError:
        outcome = "diverged"
    Path(results, str(rank)).write_text(f"{outcome} moved={moved}")
    teardown_distributed()


@pytest.mark.parametrize("use_ddp", [True, False])
def test_grpo_update_under_ddp_keeps_replicas_identical(tmp_path, use_ddp):
    mp.spawn(_grpo_worker, args=(free_address(), use_ddp, str(tmp_path)), nprocs=2)
    outcomes = [(tmp_path / str(r)).read_text() for r in range(2)]
    assert outcomes == [("in sync" if use_ddp else "diverged") + " moved=True"] * 2


def _two_ranks_rollout():
    """Eight rows of very different response lengths, and their advantages; rank r takes rows 4r .. 4r + 3."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 100, (8, 16), generator=g)
    mask = torch.zeros(8, 15, dtype=torch.bool)
    for i, (start, end) in enumerate([(2, 5), (1, 14), (3, 8), (2, 11), (4, 15), (1, 3), (2, 9), (5, 13)]):
        mask[i, start:end] = True
    return Rollout(ids, mask, [""] * 8, mask.sum(1).tolist()), torch.linspace(-1, 1, 8)


def _gradient_worker(rank: int, store: str, results: str):
    import r1mini.rl
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2, timeout=timedelta(seconds=60))
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    ro, adv = _two_ranks_rollout()
    rows = slice(4 * rank, 4 * rank + 4)
    mine = Rollout(ro.ids[rows], ro.mask[rows], [""] * 4, ro.lengths[rows])

    def keep_gradient(model, optimizer, loss, grad_clip):  # after the last backward: DDP has averaged the ranks'
        torch.save(torch.cat([p.grad.flatten() for p in model.parameters()]), Path(results, f"grad{rank}.pt"))
        return apply_update(model, optimizer, loss, grad_clip)
    r1mini.rl.apply_update = keep_gradient
    policy = Policy(model, torch.optim.SGD(model.parameters(), lr=0.1), training_forward(model, torch.device("cpu")))
    grpo_update(policy, mine, adv[rows], torch.ones(4, dtype=torch.bool),
                GRPOConfig(max_new_tokens=15, agg="token-mean", micro_batch_size=1))
    teardown_distributed()


def test_ddp_update_has_the_plain_updates_gradient(tmp_path):
    """Two ranks, four rows each, in micro-batches of one row: each chunk's loss weighs its share of both
    ranks' tokens, times the world size, as DDP averages the gradients; the gradient every rank applies is
    then plain_update's over all eight rows in one process."""
    mp.spawn(_gradient_worker, args=(free_address(), str(tmp_path)), nprocs=2)
    grads = [torch.load(tmp_path / f"grad{r}.pt", weights_only=True) for r in range(2)]
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    ro, adv = _two_ranks_rollout()
    plain_update(model, torch.optim.SGD(model.parameters(), lr=0.1), ro, adv,
                 GRPOConfig(max_new_tokens=15, agg="token-mean", grad_clip=1e9))
    plain = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.equal(grads[0], grads[1]) and plain.abs().max() > 1e-3
    assert torch.allclose(grads[0], plain, atol=1e-6)


def _moe_worker(rank: int, store: str, results: str):
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2, timeout=timedelta(seconds=60))
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100, n_routed_experts=8, moe_top_k=1))
    forward = training_forward(model, torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(rank)
    for _ in range(3):
        x = torch.randint(0, 100, (1, 2), generator=g)  # 2 tokens, top-1 routing: 6 of the 8 experts get none
        _, loss = forward(x, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        apply_update(model, optimizer, loss.detach(), 1.0)
    check_replicas_in_sync(model)
    Path(results, str(rank)).write_text("in sync")
    teardown_distributed()


def test_ddp_trains_an_moe_whose_experts_get_no_tokens(tmp_path):
    """DDP waits for a gradient of every parameter; an expert that no token chose used to have none, and the
    next forward failed ("Expected to have finished reduction in the prior iteration")."""
    mp.spawn(_moe_worker, args=(free_address(), str(tmp_path)), nprocs=2)
    assert [(tmp_path / str(r)).read_text() for r in range(2)] == ["in sync"] * 2


def _dynamic_rollout(rank: int, kept_on_rank_1: str):
    """Each rank's rollout: 4 rows of different response lengths. Dynamic sampling keeps 3 rows on rank 0
    and none or one on rank 1."""
    g = torch.Generator().manual_seed(10 + rank)
    ids = torch.randint(0, 100, (4, 12), generator=g)
    mask = torch.zeros(4, 11, dtype=torch.bool)
    for i in range(4):
        mask[i, 2 + 2 * i + rank:] = True
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5]) * (rank + 1)
    keep = torch.tensor([True, False, True, True]) if rank == 0 else \
        torch.tensor([False, False, kept_on_rank_1 == "one", False])
    return Rollout(ids, mask, [""] * 4, mask.sum(1).tolist()), adv, keep


def _dynamic_update(model, forward, ro, adv, keep, minibatches: int):
    policy = Policy(model, torch.optim.SGD(model.parameters(), lr=0.5), forward)
    return grpo_update(policy, ro, adv, keep, GRPOConfig(max_new_tokens=11, mu=2, minibatches=minibatches,
                                                         agg="token-mean", micro_batch_size=1))


def _dynamic_worker(rank: int, store: str, kept_on_rank_1: str, minibatches: int, results: str):
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2, timeout=timedelta(seconds=60))
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    _dynamic_update(model, training_forward(model, torch.device("cpu")), *_dynamic_rollout(rank, kept_on_rank_1),
                    minibatches)
    check_replicas_in_sync(model)
    if rank == 0:
        torch.save(model.state_dict(), Path(results, "ddp.pt"))
    teardown_distributed()


@pytest.mark.parametrize("kept_on_rank_1, minibatches", [("none", 1), ("one", 1), ("one", 3)])
def test_dynamic_sampling_under_ddp_is_the_global_batch_update(tmp_path, kept_on_rank_1, minibatches):
    """--drop_uniform_groups can leave a rank no rows, or fewer minibatches than the others: it used to return
    before the backward the other ranks waited on (a deadlock; here a 60 s timeout). Every rank now takes part
    in every update, and each row weighs its share of all ranks' tokens: with one minibatch the two ranks'
    update equals one process's update of both rollouts together."""
    mp.spawn(_dynamic_worker, args=(free_address(), kept_on_rank_1, minibatches, str(tmp_path)), nprocs=2)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    parts = [_dynamic_rollout(r, kept_on_rank_1) for r in range(2)]
    ro = Rollout(torch.cat([p[0].ids for p in parts]), torch.cat([p[0].mask for p in parts]), [""] * 8, [])
    _dynamic_update(model, model, ro, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]), 1)
    moved = max((ddp[k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-3
    if minibatches == 1:
        assert all(torch.allclose(v, ddp[k], atol=1e-5) for k, v in model.state_dict().items())


def _varying_rollout(rank: int, step: int):
    """8 rows whose responses end at 8 different columns, shifted by rank and step: length_chunks then cuts
    every chunk of every update to a width of its own."""
    g = torch.Generator().manual_seed(10 * step + rank)
    ids = torch.randint(0, 100, (8, 26), generator=g)
    mask = torch.zeros(8, 25, dtype=torch.bool)
    for i in range(8):
        mask[i, 4:6 + 2 * i + rank + step] = True
    return Rollout(ids, mask, [""] * 8, mask.sum(1).tolist()), torch.linspace(-1, 1, 8) * (rank + 1)


def _compiled_ddp_worker(rank: int, store: str, compile: bool, results: str):
    from torch._dynamo.utils import counters
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2, timeout=timedelta(seconds=300))
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    # what make_policy builds for an RL stage with --compile true under torchrun: torch.compile(DDP(model))
    forward = training_forward(model, torch.device("cpu"), compile=compile, dynamic=True)
    policy = Policy(model, torch.optim.SGD(model.parameters(), lr=0.5), forward)
    graphs, ratio_devs = [], []
    for step in range(2):
        ro, adv = _varying_rollout(rank, step)
        stats = grpo_update(policy, ro, adv, torch.ones(8, dtype=torch.bool), GRPOConfig(max_new_tokens=25, mu=2))
        graphs.append(counters["stats"]["unique_graphs"])
        ratio_devs.append(stats["ratio_dev"])
    check_replicas_in_sync(model)
    if rank == 0:
        torch.save({"state": model.state_dict(), "graphs": graphs, "ratio_devs": ratio_devs},
                   Path(results, f"compile_{compile}.pt"))
    teardown_distributed()


def test_compiled_ddp_forward_over_varying_widths(tmp_path):
    """torch.compile(DDP(model), dynamic=True), the RL stages' training forward with --compile under torchrun, had
    no test, and the combination is known to be fragile with changing shapes. Two ranks, two GRPO steps of
    mu 2 over chunks of many widths: the replicas stay identical, the update is the eager DDP update's (to
    float32 rounding: compiled kernels sum in other orders), the first update is exactly on-policy, and the
    second step's new widths compile no new graph (dynamic shapes, not one graph per width)."""
    for compile in (False, True):
        mp.spawn(_compiled_ddp_worker, args=(free_address(), compile, str(tmp_path)), nprocs=2)
    eager, compiled = (torch.load(tmp_path / f"compile_{c}.pt", weights_only=True) for c in (False, True))
    torch.manual_seed(0)
    start = Transformer(model_config("toy", vocab_size=100)).state_dict()
    moved = max((eager["state"][k] - start[k]).abs().max().item() for k in start)
    gap = max((eager["state"][k] - compiled["state"][k]).abs().max().item() for k in start)
    # compiled kernels round differently (1e-7 measured); a wrong update would be off by a share of the move
    assert moved > 1e-2 and gap < 1e-4 * moved
    assert compiled["ratio_devs"] == [0.0, 0.0]
    assert compiled["graphs"][0] > 0 and compiled["graphs"][1] == compiled["graphs"][0]


def _sft_setup():
    """A toy model and SFT examples of different lengths and target counts (mask: the second half)."""
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    g = torch.Generator().manual_seed(1)
    examples = []
    for i in range(11):  # 11 examples, batch 4: the last global batch has 3 rows
        n = 6 + i % 5
        ids = torch.randint(1, 100, (n,), generator=g).tolist()
        examples.append((ids, [j >= n // 2 for j in range(n)]))
    return model, examples


def _sft_train(model, examples, micro: int):
    from r1mini.sft import train_sft
    return train_sft(model, examples, epochs=2, batch_size=4, lr=1e-2, pad_id=0, seed=3, warmup=2,
                     micro_batch_size=micro)


def _sft_worker(rank: int, store: str, results: str):
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
    model, examples = _sft_setup()
    losses = _sft_train(model, examples, micro=1)  # 2 ranks x micro-batches of 1 row
    if rank == 0:
        torch.save({"state": model.state_dict(), "losses": losses}, Path(results, "ddp.pt"))
    teardown_distributed()


def test_sft_micro_batches_and_ranks_match_one_batch(tmp_path):
    """The global batch is the same whatever the number of ranks and micro-batches: same losses and weights."""
    model, examples = _sft_setup()
    ref_losses = _sft_train(model, examples, micro=0)
    ref = model.state_dict()
    model, examples = _sft_setup()
    acc_losses = _sft_train(model, examples, micro=3)
    assert acc_losses == pytest.approx(ref_losses, rel=1e-5)
    assert all(torch.allclose(ref[k], v, atol=1e-5) for k, v in model.state_dict().items())
    mp.spawn(_sft_worker, args=(free_address(), str(tmp_path)), nprocs=2)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert ddp["losses"] == pytest.approx(ref_losses, rel=1e-5)
    assert all(torch.allclose(ref[k], v, atol=1e-5) for k, v in ddp["state"].items())
    # the weights did move, so matching means something
    fresh, _ = _sft_setup()
    assert not torch.allclose(fresh.state_dict()["blocks.0.attn.wq.weight"], ref["blocks.0.attn.wq.weight"])


def test_train_r1_torchrun_all_stages(toy_speedrun, tmp_path):
    """Every R1 stage under torchrun: SFT with micro-batches, striped sampling, GRPO; replicas identical. (From
    the session toy speedrun's R1-Zero, and its student base.)"""
    zero, r1 = toy_speedrun[0] / "zero", tmp_path / "r1"
    r = torchrun("train_r1.py", "--preset", "toy", "--init", zero, "--out", r1, "--device", "cpu",
                 "--sft_micro_batch_size", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("cold_start", "reasoning_rl", "rejection_sft", "final_rl"):
        model, _, meta = load_checkpoint(r1 / stage)
        m = re.search(rf"\[{stage}\] replicas in sync: parameter checksum (\S+) on 2 rank", r.stdout)
        assert m, r.stdout[-2000:]
        assert float(m.group(1)) == pytest.approx(param_checksum(model).sum().item(), rel=1e-12)
        assert all(0 <= meta["metrics"][k] <= 1 for k in ("pass@1/en", "pass@1/zh", "lang/en", "lang/zh"))
    # the striped rejection sampling gathered every prompt's samples: rs_prompts x rs_samples
    assert json.loads((r1 / "rejection_sft" / "meta.json").read_text())["metrics"]["filter/total"] == 4 * 2
    rows = [json.loads(l) for l in (r1 / "log.jsonl").read_text().splitlines()]
    rl = [row for row in rows if row.get("stage") == "reasoning_rl" and "step" in row]
    assert [row["step"] for row in rl] == [1, 2] and all(0 <= row["accuracy"] <= 1 for row in rl)
    # distillation of that R1 model into a smaller student under torchrun: striped teacher sampling, data-
    # parallel SFT with micro-batches, replicas identical
    student_base, student = toy_speedrun[0] / "student_base", tmp_path / "student"
    r = torchrun("distill.py", "--preset", "toy", "--init", r1 / "final_rl", "--student", student_base,
                 "--out", student, "--device", "cpu", "--micro_batch_size", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    model, _, meta = load_checkpoint(student, expect_stage="student")
    assert logged_checksum(r.stdout) == pytest.approx(param_checksum(model).sum().item(), rel=1e-12)
    assert meta["metrics"]["filter/total"] == 6 * 2  # every prompt's samples gathered from both ranks
    assert model.cfg.n_layer < load_checkpoint(r1 / "final_rl")[0].cfg.n_layer


def test_length_chunks_sort_rows_and_cut_each_chunk_at_its_longest():
    widths = torch.tensor([9, 3, 7, 3, 12, 5, 4])
    needed = torch.arange(14)[None] < widths[:, None]  # each row's last needed column is width - 1
    needed[1, 0] = False  # a gap before the end changes nothing
    # 7 rows in LENGTH_CHUNKS = 4 chunks of at most 2, shortest first (ties in row order), each as wide as its longest
    assert [(rows.tolist(), w) for rows, w in distributed.length_chunks(needed)] == \
        [([1, 3], 3), ([6, 5], 5), ([2, 0], 9), ([4], 12)]
    assert [(rows.tolist(), w) for rows, w in distributed.length_chunks(needed, micro=1)] == \
        [([1], 3), ([3], 3), ([6], 4), ([5], 5), ([2], 7), ([0], 9), ([4], 12)]  # micro-batches of 1 row fit
    assert [len(rows) for rows, _ in distributed.length_chunks(torch.ones(1, 5, dtype=torch.bool))] == [1]


def torchrun4(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=4", *map(str, args)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_final_rl_on_4_ranks_where_only_some_get_general_prompts(base, tmp_path):
    """8 prompts a step, 2 of them general (general_share 0.25), striped over 4 ranks: ranks 2 and 3 get one
    general prompt each, ranks 0 and 1 none. Their rewards' accuracy then covers every reply on ranks 0 and 1
    and not on 2 and 3, and step_metrics used to add the accuracy of replies that reflect (and not) on the
    first two only: the ranks all-reduced lists of different lengths, and gloo aborted ("collective
    mismatch"; NCCL would hang or sum garbage). Every rank must report the same metrics."""
    zero, r1 = tmp_path / "zero", tmp_path / "r1"
    r = subprocess.run([sys.executable, "train_zero.py", "--preset", "toy", "--init", str(base), "--out", str(zero),
                        "--steps", "1"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "train_r1.py", "--preset", "toy", "--init", str(zero), "--out", str(r1),
                        "--rl_steps", "1", "--final_steps", "0"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    r = torchrun4("train_r1.py", "--preset", "toy", "--init", zero, "--out", r1, "--device", "cpu", "--stage",
                  "final_rl", "--prompts_per_step", 8, "--final_steps", 2)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(l) for l in (r1 / "log.jsonl").read_text().splitlines()]
    steps = [row for row in rows if row.get("stage") == "final_rl" and "step" in row]
    assert [row["step"] for row in steps] == [1, 2]
    for row in steps:  # the accuracy of reflecting and plain replies: reported, from the ranks that know it
        assert {"reflect_acc", "plain_acc"} <= row.keys()
        assert all(row[k] is None or 0 <= row[k] <= 1 for k in ("reflect_acc", "plain_acc", "accuracy"))



# -- one rank's failure stops every rank ------------------------------------------------------------------------

def test_a_failing_rank_stops_every_rank_with_its_message(base, tmp_path):
    """Rank 1 runs out of memory in its first rollout (a stand-in: step_guard's message) while rank 0 goes on
    into the update's first collective. The run must end at once, saying why and where, not wait there
    until a timeout. (With gloo the waiting rank also sees its peer's socket close; NCCL does not, and a
    failing rank's own exit could hang destroying its communicators: run_script leaves by os._exit.)"""
    script = tmp_path / "zero_oom_on_rank_1.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(ROOT)!r})\nimport train_zero\n"
                      "from r1mini.distributed import rank_and_world, run_script\n"
                      "def reward(completions, problems, format_weight=1.0):\n"
                      "    if rank_and_world()[0] == 1:\n"
                      "        raise SystemExit('CUDA out of memory at step 1 (rollout): lower --group_size')\n"
                      "    return [0.0] * len(completions), {'accuracy': [0.0] * len(completions)}\n"
                      "train_zero.zero_rewards = reward\nrun_script(train_zero.main)\n")
    started = time.time()
    r = torchrun(script, "--preset", "toy", "--init", base, "--out", tmp_path / "zero", "--steps", "3",
                 "--eval_every", "100", "--device", "cpu", timeout=120)
    assert r.returncode != 0 and time.time() - started < 60
    assert "[rank 1] CUDA out of memory at step 1 (rollout): lower --group_size" in r.stderr
    assert not (tmp_path / "zero" / "meta.json").exists()


def _nan_worker(rank: int, store: str, out: str, results: str):
    from r1mini.checkpoint import save_checkpoint
    from r1mini.tokenizer import Tokenizer
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2, timeout=timedelta(seconds=20))
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=100))
    with torch.no_grad():
        model.blocks[0].attn.wq.weight[0, 0] = float("nan")  # the same on both replicas, as after a NaN update
    try:
        save_checkpoint(out, model, Tokenizer.__new__(Tokenizer), {"step": 7})
        dist.barrier()  # where the ranks meet next
        outcome = "saved"
    except FloatingPointError as e:
        outcome = str(e)
    Path(results, str(rank)).write_text(outcome)


def test_every_rank_refuses_to_save_nan_weights(tmp_path):
    """Only rank 0 used to check the weights before saving: it stopped, and the others went on to wait for it
    in their next collective (here a barrier: gloo then fails on the closed socket, NCCL waits 10 minutes).
    The replicas hold the same weights, so every rank checks, and all stop with the same message."""
    mp.spawn(_nan_worker, args=(free_address(), str(tmp_path / "ckpt"), str(tmp_path)), nprocs=2)
    outcomes = [(tmp_path / str(r)).read_text() for r in range(2)]
    assert all(o.startswith("not saving step 7") and "NaN" in o for o in outcomes), outcomes
    assert not (tmp_path / "ckpt" / "meta.json").exists()
