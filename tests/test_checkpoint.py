"""Tests for r1mini.checkpoint: a checkpoint directory round-trips (weights, buffers, tied embeddings, the
tokenizer, meta, train state), errors say what to do, a resume loads weights and optimizer and refuses another
model, and the random states come back exactly."""

import json
import random

import numpy as np
import pytest
import torch

from r1mini.checkpoint import (is_done, load_checkpoint, load_train_state, restore_rngs, resume, save_checkpoint,
                               save_rngs, seed_everything)
from r1mini.config import UserError
from r1mini.model import Transformer, model_config
from r1mini.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return Tokenizer.train(["hello world 123 <think> x </think>"] * 20 + ["计算 12 加 7"] * 5, 270)


def test_checkpoint_round_trip(tmp_path, tiny_tokenizer):
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=tiny_tokenizer.vocab_size, n_routed_experts=4))
    with torch.no_grad():
        for moe in model.moe_layers():
            moe.bias.copy_(torch.arange(4.0))  # a buffer, which must be saved too
    meta = {"stage": "base", "step": 3, "note": "计算"}
    save_checkpoint(tmp_path, model, tiny_tokenizer, meta, train_state={"step": 3, "x": torch.ones(2)})
    for f in ["model.pt", "model.json", "tokenizer.tiktoken", "tokenizer.json", "meta.json", "train_state.pt"]:
        assert (tmp_path / f).is_file(), f
    assert not list(tmp_path.glob("*.tmp"))
    loaded, tok, meta2 = load_checkpoint(tmp_path, expect_stage="base")
    assert meta2 == meta and tok.encode("hello 123") == tiny_tokenizer.encode("hello 123")
    assert loaded.cfg == model.cfg
    assert torch.equal(loaded.moe_layers()[0].bias, torch.arange(4.0))
    assert loaded.lm_head.weight.data_ptr() == loaded.tok_emb.weight.data_ptr()  # still tied
    idx = torch.tensor([tiny_tokenizer.encode("hello world 123")])
    assert torch.equal(loaded.eval()(idx), model.eval()(idx))
    state = load_train_state(tmp_path)
    assert state["step"] == 3 and torch.equal(state["x"], torch.ones(2))


def test_checkpoint_errors(tmp_path, tiny_tokenizer):
    with pytest.raises(UserError, match=f"no checkpoint at {tmp_path}: run pretrain.py first"):
        load_checkpoint(tmp_path, expect_stage="base", made_by="pretrain.py")
    with pytest.raises(UserError, match="start from a checkpoint directory that an earlier stage wrote"):
        load_checkpoint(tmp_path / "missing")
    model = Transformer(model_config("toy", vocab_size=tiny_tokenizer.vocab_size))
    save_checkpoint(tmp_path, model, tiny_tokenizer, {"stage": "base"})
    with pytest.raises(UserError, match="expected 'zero'"):
        load_checkpoint(tmp_path, expect_stage="zero")
    assert load_train_state(tmp_path) is None
    # a model.json that does not fit the tokenizer: files from different runs
    cfg = json.loads((tmp_path / "model.json").read_text())
    cfg["vocab_size"] += 1
    (tmp_path / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="different runs"):
        load_checkpoint(tmp_path)


def test_is_done(tmp_path, tiny_tokenizer):
    assert not is_done(tmp_path)  # nothing there
    model = Transformer(model_config("toy", vocab_size=tiny_tokenizer.vocab_size))
    save_checkpoint(tmp_path, model, tiny_tokenizer, {"stage": "base", "step": 2, "done": False})
    assert not is_done(tmp_path)
    save_checkpoint(tmp_path, model, tiny_tokenizer, {"stage": "base", "step": 4, "done": True})
    assert is_done(tmp_path)


def test_resume_loads_weights_and_optimizer(tmp_path, capsys):
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))[1].backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 7}
    torch.manual_seed(1)
    fresh = Transformer(model_config("toy", vocab_size=64))
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    assert resume(state, fresh, fresh_optimizer, tmp_path / "run") == 7
    assert f"resuming {tmp_path / 'run'} from step 7" in capsys.readouterr().out
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())
    moments = lambda opt: [s["exp_avg"] for s in opt.state_dict()["state"].values()]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(moments(optimizer), moments(fresh_optimizer)))
    assert len(moments(fresh_optimizer)) == len(list(model.parameters()))
    assert fresh_optimizer.param_groups[0]["lr"] == 1e-3  # the saved learning rate...
    resume(state, fresh, fresh_optimizer, tmp_path / "run", lr=5e-4)
    assert fresh_optimizer.param_groups[0]["lr"] == 5e-4  # ...unless the command line gives another
    # the flags now ask for another model than the run in out/ trained
    other = Transformer(model_config("toy", vocab_size=65))
    with pytest.raises(UserError) as e:
        resume(state, other, torch.optim.AdamW(other.parameters()), tmp_path / "run")
    assert str(e.value).startswith(f"{tmp_path / 'run'} holds a run of another model")


def draw_everything(problem_rng: random.Random, sampler: torch.Generator) -> list:
    return [random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item(), problem_rng.random(),
            torch.rand(1, generator=sampler).item()]


def test_save_and_restore_rngs_round_trip(tmp_path):
    """A resume draws exactly what the uninterrupted run drew next: every global RNG, the run's problem RNG
    and its sampler's generator, also after the state went through torch.save and a weights_only load."""
    seed_everything(3)
    problem_rng, sampler = random.Random(5), torch.Generator().manual_seed(6)
    draw_everything(problem_rng, sampler)  # one gaussian: numpy now caches the second of its pair
    assert np.random.get_state()[3] == 1  # (has_gauss) so the saved state must carry that cache
    state = save_rngs(problem_rng, sampler)
    assert set(state) == {"rng", "problem_rng", "sampler"}
    torch.save(state, tmp_path / "state.pt")
    first = draw_everything(problem_rng, sampler)
    seed_everything(99)  # anything in between
    problem_rng, sampler = random.Random(0), torch.Generator().manual_seed(0)
    draw_everything(problem_rng, sampler)
    restore_rngs(torch.load(tmp_path / "state.pt", weights_only=True), problem_rng, sampler)
    assert draw_everything(problem_rng, sampler) == first
    # only the global RNGs, when the run has no streams of its own
    state = save_rngs()
    assert set(state) == {"rng"}
    first = [random.random(), np.random.rand(), torch.rand(1).item()]
    restore_rngs(state)
    assert [random.random(), np.random.rand(), torch.rand(1).item()] == first


def test_seed_everything():
    seed_everything(11)
    a = [random.random(), np.random.rand(), torch.rand(1).item()]
    seed_everything(11)
    assert [random.random(), np.random.rand(), torch.rand(1).item()] == a
    seed_everything(12)
    assert [random.random(), np.random.rand(), torch.rand(1).item()] != a


def test_seed_everything_on_the_cpu_leaves_no_garbage_in_new_memory():
    """Given a CPU device, torch's deterministic mode is on and fills what torch.empty hands out (NaN for
    floats), so a kernel that reads memory nothing wrote reads the same thing in every run; for a GPU device the
    mode is off again."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        seed_everything(1, torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled() and torch.empty(1000).isnan().all()
        seed_everything(1, torch.device("cuda"))  # a device object needs no GPU
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_check_preset_refuses_a_checkpoint_of_another_preset(tmp_path):
    from r1mini.checkpoint import check_preset
    (tmp_path / "meta.json").write_text(json.dumps({"stage": "base", "preset": "toy"}))
    check_preset(tmp_path, "toy")
    check_preset(tmp_path, "toy-student")  # the student of the same preset: the same family
    with pytest.raises(UserError, match=r"was made at preset toy, and this run is at preset cpu: run at preset "
                                        r"toy, or start from a checkpoint made at preset cpu"):
        check_preset(tmp_path, "cpu")
    (tmp_path / "meta.json").write_text(json.dumps({"stage": "base"}))  # written before presets were recorded
    check_preset(tmp_path, "cpu")
    check_preset(tmp_path / "nothing here", "gpu")  # no checkpoint: nothing to refuse
