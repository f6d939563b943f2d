"""Tests for r1mini.corpus: packing documents into a token stream and drawing training windows from it, and
the synthetic pretraining corpus (deterministic, the intended mix of documents, only its own split's problems)."""

import re

import numpy as np
import pytest
import torch

from r1mini.corpus import corpus_documents, pack, random_windows
from r1mini.formats import zero_prompt
from r1mini.rewards import format_reward
from r1mini.tasks import split_of, suite

# -- packing and windows -------------------------------------------------------------------------------

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


# -- the corpus ----------------------------------------------------------------------------------

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
    convs = [d for d in cpu_docs if d.startswith(zero_prompt("")[:40])]
    assert 0.4 < len(task_docs) / 3000 < 0.7 and 0.15 < len(convs) / 3000 < 0.45
    steps = [d for d in task_docs if re.search("by columns|逐位|on both sides|两边", d)]
    assert 0.3 <= len(steps) / len(task_docs) <= 0.5  # step by step: a minority, but there
    zh = [d for d in cpu_docs if HAN.search(d)]
    assert 0.05 < len(zh) / 3000 < 0.5  # Chinese present, a minority
    checked = [d for d in cpu_docs if "Check" in d or "检查" in d]  # a quarter of the solutions check themselves
    assert 0.12 < len(checked) / 3000 < 0.3
    corrected = [d for d in checked if "Wait" in d or "等等" in d]
    assert 0.25 < len(corrected) / len(checked) < 0.5  # most checks confirm the first pass
    well_formed = [c for c in convs if format_reward(c[c.index("Assistant:") + len("Assistant:"):]) == 1.0]
    assert 0.5 < len(well_formed) / len(convs) < 1.0  # mostly in the format, not all of it
    for c in convs:
        assert c.startswith(zero_prompt(CONV_DOC.search(c).group(1)))


def question_key(question: str) -> tuple[str, str] | None:
    """(task, key) of a cpu-suite question, parsed back out of its text."""
    linear = re.search(r"(\d+)x ([+-]) (\d+) = (-?\d+)", question)
    if linear:
        a, sign, b, c = linear.groups()
        return "linear", f"{a}x+{int(b) * (1 if sign == '+' else -1)}={c}"
    nums = re.findall(r"\d+", question)
    if len(nums) != 2:
        return None
    a, b = map(int, nums)
    if re.search(r"\+|加|sum|和", question):
        return "add", f"{min(a, b)}+{max(a, b)}"  # the canonical key: the smaller operand first
    if re.search(r"×|乘|product|积", question):
        return "mul", f"{min(a, b)}*{max(a, b)}"
    return None


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_corpus_uses_only_its_split(split):
    docs = corpus_documents(suite("cpu"), 1500, seed=3, split=split)
    seen = 0
    for d in docs:
        m = TASK_DOC.match(d) or (CONV_DOC.search(d) if d.startswith(zero_prompt("")[:40]) else None)
        if not m:
            continue
        parsed = question_key(m.group(1) or m.group(2))
        assert parsed is not None, d
        assert split_of(*parsed) == split, (parsed, d)
        seen += 1
    assert seen > 1000
