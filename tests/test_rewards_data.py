"""Tests for r1mini.rewards (format, answer extraction, accuracy, step and reflection counts), r1mini.data
(packing, windows, JSONL, the synthetic corpus) and r1mini.common (config parsing, checkpoints)."""

import dataclasses
import json
import random
import re

import numpy as np
import pytest
import torch

from r1mini.common import load_checkpoint, load_train_state, parse_config, save_checkpoint
from r1mini.data import corpus_documents, pack, random_windows, read_jsonl, write_jsonl, zero_completion, zero_prompt
from r1mini.model import Transformer, model_config
from r1mini.rewards import (accuracy_reward, count_reflection_words, extract_answer, format_reward,
                            is_step_by_step)
from r1mini.tasks import Problem, TASKS, split_of, suite
from r1mini.tokenizer import Tokenizer

# -- rewards -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "<think> a </think> <answer> 5 </answer>",
    "<think>a</think><answer>5</answer>",
    "\n  <think>\nline one\nline two\n</think>\n\n<answer>\n5\n</answer>\n\n",
    "<think></think> <answer> 5 </answer>",  # an empty think block is still the format
    zero_completion("1 + 2 = 3.", "3"),
])
def test_format_reward_good(text):
    assert format_reward(text) == 1.0


@pytest.mark.parametrize("text", [
    "<answer> 5 </answer>",  # missing think
    "<think> a </think>",  # missing answer
    "<think> a </think> <answer> </answer>",  # empty answer
    "<think> a </think> <answer>\n \t</answer>",
    "<think> a </think> <answer> 5 </answer> <answer> 6 </answer>",  # two answer blocks
    "<think> a </think> <think> b </think> <answer> 5 </answer>",  # two think blocks
    "<think> a <think> b </think> </think> <answer> 5 </answer>",  # nested tags
    "<think> a </think> <answer> <answer> 5 </answer> </answer>",
    "<think> a <answer> 4 </answer> </think> <answer> 5 </answer>",
    "<answer> 5 </answer> <think> a </think>",  # reordered
    "<think> a </think> <answer> 5 </answer> and more",  # trailing text
    "so <think> a </think> <answer> 5 </answer>",  # text before <think>
    "<think> a <answer> 5 </answer>",  # think never closed
    "<think> a </think> <answer> 5",  # answer never closed
    "<think> a </think> text between <answer> 5 </answer>",
    "<THINK> a </THINK> <ANSWER> 5 </ANSWER>",
    "",
    "<think> a </think> <answer> 5 </answer>" + " " * 20_001,  # over the length bound
])
def test_format_reward_bad(text):
    assert format_reward(text) == 0.0


def test_format_reward_not_a_string():
    assert format_reward(None) == 0.0 and format_reward(b"<think></think><answer>1</answer>") == 0.0


def test_extract_answer():
    assert extract_answer("<think> a </think> <answer>  42 \n</answer>") == "42"
    assert extract_answer("<answer> 1 </answer> then <answer> 2 </answer>") == "2"  # the last block
    assert extract_answer("no think at all <answer>7</answer> trailing") == "7"  # lenient
    assert extract_answer("<answer> 1 </answer> <answer> 2") == "1"  # an unclosed last block does not count
    for text in ["<think> a </think>", "", "<answer></answer>", "<answer>   </answer>", "</answer> 3 <answer>",
                 "<answer> 5", "5 </answer>", None]:
        assert extract_answer(text) is None, text


def test_accuracy_reward():
    p = TASKS["add"].sample(random.Random(0))
    right, wrong = p.answer, str(int(p.answer) + 1)
    assert accuracy_reward(f"<think> hm </think> <answer> {right} </answer>", p) == 1.0
    assert accuracy_reward(f"<think> hm </think> <answer> {wrong} </answer>", p) == 0.0
    assert accuracy_reward(f"<answer>{right}</answer>", p) == 1.0  # no format requirement here
    assert accuracy_reward(f"<think> {right} </think>", p) == 0.0  # the answer must be in its block
    assert accuracy_reward(f"<answer>{wrong}</answer> <answer>{right}</answer>", p) == 1.0  # last block
    assert accuracy_reward(f"<answer>{right}</answer> <answer>{wrong}</answer>", p) == 0.0
    cd = Problem("countdown", "q", "en", "1 + 2 + 3 + 4", {"numbers": [1, 2, 3, 4], "target": 10})
    assert accuracy_reward("<answer> 4 * 3 - 2 * 1 </answer>", cd) == 1.0
    assert accuracy_reward("<answer> 4 * 3 - 2 </answer>", cd) == 0.0


def test_is_step_by_step_and_reflection_words():
    assert is_step_by_step("<think> 3 + 4 = 7. 7 + 5 = 12. </think> <answer> 12 </answer>")
    assert not is_step_by_step("<think> 3 + 4 + 5 = 12. </think> <answer> 12 </answer>")
    assert not is_step_by_step("<think> twelve </think> <answer> 12 </answer>")
    assert is_step_by_step("<think> 3 + 4 ＝ 7。7 + 5 ＝ 12。 </think> <answer> 12 </answer>")  # full-width =
    # only the think block counts, also when the format is broken
    assert not is_step_by_step("<think> 3 + 4 = 7 </think> <answer> 7 = 7 = 7 </answer>")
    assert is_step_by_step("<think> a = 1, b = 2 <answer> 3 </answer>")
    assert not is_step_by_step("<think> a = 1 </think> junk = 2 = 3")
    assert count_reflection_words("Wait, let me check. WAIT! I will verify; checking again.") == 5
    assert count_reflection_words("等等，检查一下，再验证。") == 3
    assert count_reflection_words("7 + 5 = 12, the sum is 12.") == 0


# -- data: packing and windows ---------------------------------------------------------------------------

def test_pack_by_hand():
    out = pack([[1, 2, 3], [], [4, 5]], eot_id=9)
    assert out.tolist() == [1, 2, 3, 9, 9, 4, 5, 9]
    assert out.dtype == np.uint16
    big = pack([[70_000, 1]], eot_id=70_001)
    assert big.tolist() == [70_000, 1, 70_001] and big.dtype == np.int32
    assert pack([], eot_id=9).tolist() == []


def test_random_windows():
    stream = np.arange(1000, dtype=np.uint16)
    x, y = random_windows(stream, 16, 50, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 50) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y, x + 1)  # shifted by one
    for row in x:  # every window is a contiguous slice of the stream, y included
        s = int(row[0])
        assert torch.equal(row, torch.from_numpy(stream[s:s + 50].astype(np.int64)))
        assert s + 50 < len(stream)
    assert len({int(r[0]) for r in x}) > 8  # random offsets
    x2, y2 = random_windows(stream, 16, 50, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = random_windows(stream, 16, 50, torch.Generator().manual_seed(1))
    assert not torch.equal(x, x3)
    with pytest.raises(ValueError, match="too short"):
        random_windows(np.arange(51), 2, 50, torch.Generator())


# -- data: JSONL ---------------------------------------------------------------------------------------

def test_jsonl_round_trip(tmp_path):
    rows = [{"q": "计算 12 + 7。", "a": 19}, {"nested": {"x": [1, 2.5, None, True]}, "emoji": "🙂"}, {}]
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, rows[:2])
    write_jsonl(path, rows[2:], append=True)
    assert read_jsonl(path) == rows
    assert "计算" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n   \n")  # blank lines are skipped
    assert read_jsonl(path) == rows


def test_read_jsonl_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": oops}\n{"d": 4}\n', encoding="utf-8")
    with pytest.raises(ValueError) as e:
        read_jsonl(path)
    assert "bad.jsonl" in str(e.value) and "line 3" in str(e.value)
    path.write_text('{"a": 1}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError) as e:
        read_jsonl(path)
    assert "bad.jsonl" in str(e.value) and "line 3" in str(e.value) and "object" in str(e.value)
    path.write_text('"just a string"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        read_jsonl(path)


# -- data: the corpus ----------------------------------------------------------------------------------

HAN = re.compile(r"[\u4e00-\u9fff]")
TASK_DOC = re.compile(r"(?:Question|Q|Problem): (.*)\n|问题：(.*)\n")
CONV_DOC = re.compile(r"User: (.*?) Assistant:", re.DOTALL)


@pytest.fixture(scope="module")
def cpu_docs():
    return corpus_documents(suite("cpu"), 3000, seed=0)


def test_corpus_is_deterministic(cpu_docs):
    assert corpus_documents(suite("cpu"), 3000, seed=0) == cpu_docs
    assert corpus_documents(suite("cpu"), 300, seed=1) != cpu_docs[:300]


def test_corpus_mix(cpu_docs):
    assert len(cpu_docs) == 3000
    task_docs = [d for d in cpu_docs if TASK_DOC.match(d)]
    convs = [d for d in cpu_docs if d.startswith("A conversation between User and Assistant")]
    assert 0.4 < len(task_docs) / 3000 < 0.7 and 0.15 < len(convs) / 3000 < 0.45
    steps = [d for d in task_docs if "digit by digit" in d or "逐位" in d]
    assert 0.15 <= len(steps) / len(task_docs) <= 0.35  # step by step: a minority, but there
    zh = [d for d in cpu_docs if HAN.search(d)]
    assert 0.05 < len(zh) / 3000 < 0.5  # Chinese present, a minority
    reflect = [d for d in cpu_docs if "Wait, let me check" in d or "等等" in d]
    assert 0.005 < len(reflect) / 3000 < 0.1
    well_formed = [c for c in convs if format_reward(c[c.index("Assistant:") + len("Assistant:"):]) == 1.0]
    assert 0.5 < len(well_formed) / len(convs) < 1.0  # mostly in the format, not all of it
    for c in convs:
        assert c.startswith(zero_prompt(CONV_DOC.search(c).group(1)))


def question_key(question: str) -> tuple[str, str] | None:
    """(task, key) of a cpu-suite question, parsed back out of its text."""
    nums = re.findall(r"\d+", question)
    if len(nums) != 2:
        return None
    a, b = map(int, nums)
    if re.search(r"\+|加|sum|和", question):
        return "add", f"{a}+{b}"
    if re.search(r"×|乘|product|积", question):
        return "mul", f"{a}*{b}"
    return None


@pytest.mark.parametrize("split", ["train", "test"])
def test_corpus_uses_only_its_split(split):
    docs = corpus_documents(suite("cpu"), 1500, seed=3, split=split)
    seen = 0
    for d in docs:
        m = TASK_DOC.match(d) or (CONV_DOC.search(d) if d.startswith("A conversation") else None)
        if not m:
            continue
        parsed = question_key(m.group(1) or m.group(2))
        assert parsed is not None, d
        assert split_of(*parsed) == split, (parsed, d)
        seen += 1
    assert seen > 1000


# -- common: config ------------------------------------------------------------------------------------

@dataclasses.dataclass
class DemoConfig:
    steps: int = 10
    lr: float = 0.1
    name: str = "x"
    flag: bool = True


DEMO_PRESETS = {"small": dict(steps=3), "cpu": dict(), "gpu": dict(steps=1000, lr=0.01, flag=False)}


def test_parse_config():
    cfg, args = parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "small"])
    assert cfg == DemoConfig(steps=3) and args.preset == "small" and args.seed == 1337
    cfg, _ = parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "gpu"])
    assert cfg == DemoConfig(steps=1000, lr=0.01, flag=False)
    cfg, args = parse_config(DemoConfig, DEMO_PRESETS, "doc",
                             ["--preset", "gpu", "--steps", "7", "--lr", "3e-4", "--name", "run 2", "--flag", "true",
                              "--seed", "5", "--out", "o"], default_out="out/demo")
    assert cfg == DemoConfig(steps=7, lr=3e-4, name="run 2", flag=True)
    assert type(cfg.steps) is int and type(cfg.lr) is float
    assert (args.seed, args.out) == (5, "o")
    for text, value in [("false", False), ("0", False), ("no", False), ("True", True), ("on", True)]:
        assert parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "cpu", "--flag", text])[0].flag is value
    _, args = parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "cpu"], default_init="out/base")
    assert args.init == "out/base" and args.out == "out/run"
    cfg, _ = parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--device", "cpu"])  # no preset: cpu on cpu
    assert cfg == DemoConfig()


def test_parse_config_errors():
    with pytest.raises(SystemExit) as e:
        parse_config(DemoConfig, DEMO_PRESETS, "doc", ["--preset", "huge"])
    assert "huge" in str(e.value.code) and "small" in str(e.value.code)
    for argv in (["--preset", "cpu", "--flag", "maybe"], ["--preset", "cpu", "--steps", "1.5"],
                 ["--preset", "cpu", "--bogus", "1"]):
        with pytest.raises(SystemExit) as e:
            parse_config(DemoConfig, DEMO_PRESETS, "doc", argv)
        assert e.value.code == 2  # argparse's usage error


# -- common: checkpoints -------------------------------------------------------------------------------

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
    with pytest.raises(SystemExit) as e:
        load_checkpoint(tmp_path, expect_stage="base")
    assert "pretrain.py" in str(e.value.code)
    with pytest.raises(SystemExit, match="--init"):
        load_checkpoint(tmp_path / "missing")
    model = Transformer(model_config("toy", vocab_size=tiny_tokenizer.vocab_size))
    save_checkpoint(tmp_path, model, tiny_tokenizer, {"stage": "base"})
    with pytest.raises(SystemExit, match="expected 'zero'"):
        load_checkpoint(tmp_path, expect_stage="zero")
    assert load_train_state(tmp_path) is None
    # a model.json that does not fit the tokenizer: files from different runs
    cfg = json.loads((tmp_path / "model.json").read_text())
    cfg["vocab_size"] += 1
    (tmp_path / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit, match="different runs"):
        load_checkpoint(tmp_path)


def test_logger_drop_after(tmp_path):
    from r1mini.common import JsonlLogger
    logger = JsonlLogger(tmp_path / "log.jsonl")
    for step in range(1, 6):
        logger.log({"step": step, "loss": 1.0 / step})
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # the run was killed mid-write
    logger.drop_after(3)
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [1, 2, 3]
    logger.log({"step": 4})
    assert [r["step"] for r in read_jsonl(tmp_path / "log.jsonl")] == [1, 2, 3, 4]
