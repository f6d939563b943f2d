"""Tests for r1mini.sft: the targets of one example by hand (the loss on the assistant's tokens only), and the
loss of a batch against cross-entropy summed by hand over exactly the reply tokens. (That micro-batches and
ranks train on the same global batch is tested with two processes in test_distributed.py.)"""

import random

import pytest
import torch
import torch.nn.functional as F

from r1mini.formats import chat_ids
from r1mini.model import Transformer, model_config
from r1mini.sft import sft_batches, sft_targets
from r1mini.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(["What is 2 + 3? <think> 2 + 3 = 5. </think> The answer is <answer> 5 </answer>"] * 30, 270)


def test_sft_targets_by_hand():
    x, y = sft_targets([1, 2, 3, 4, 5], [False, False, True, True, True], pad_id=0, length=6)
    assert x == [1, 2, 3, 4, 0, 0]
    assert y == [-1, 3, 4, 5, -1, -1]  # target j is token j+1, kept only where it is the assistant's


def test_sft_loss_is_cross_entropy_on_assistant_tokens_only(tok):
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=tok.vocab_size))
    examples = [chat_ids(tok, "What is 2 + 3?", " 5"), chat_ids(tok, "Hi", " Hello, how are you?")]
    x, y = next(sft_batches(examples, 2, 64, pad_id=0, rng=random.Random(0)))
    logits, loss = model(x, y)
    # by hand: average -log p over the positions whose next token belongs to an assistant reply
    terms = []
    for b in range(x.size(0)):
        for j in range(x.size(1)):
            if y[b, j] >= 0:
                terms.append(-F.log_softmax(logits[b, j], -1)[y[b, j]])
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    n_reply = sum(sum(m[1:]) for _, m in examples)
    assert len(terms) == n_reply  # every reply token (and its <|end|>) is a target, no prompt token is
