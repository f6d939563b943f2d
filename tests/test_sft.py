"""Tests for r1mini.sft: the targets of one example by hand (the loss on the assistant's tokens only), and the
loss of a batch against cross-entropy summed by hand over exactly the reply tokens. (That micro-batches and
ranks train on the same global batch is tested with two processes in test_distributed.py.)"""

import copy
import random

import pytest
import torch
import torch.nn.functional as F

from r1mini import distributed, sft
from r1mini.formats import chat_ids
from r1mini.model import Transformer, model_config
from r1mini.optim import apply_update
from r1mini.sft import sft_batches, sft_targets, train_sft
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


def test_sft_in_length_chunks_is_the_plain_step_by_hand(tok, monkeypatch):
    """A batch of four examples of very different lengths: train_sft runs it in chunks by length, each forward
    only as wide as its longest row's last target (counted), and its loss and accumulated gradient are those
    of the plain loss over the whole padded batch, computed here by hand (the mean over every reply token)."""
    pairs = [("Hi", "Hello."), ("What is 2 + 2?", "It is 4, since 2 + 2 = 4; " * 6), ("Say yes", "Yes " * 3),
             ("Count to ten", "1 2 3 4 5 6 7 8 9 10 " * 3)]
    examples = [chat_ids(tok, user, reply) for user, reply in pairs]
    torch.manual_seed(0)
    model = Transformer(model_config("toy", vocab_size=tok.vocab_size))
    by_hand = copy.deepcopy(model)
    widths, grads = [], []
    model.register_forward_hook(lambda m, i, o: widths.append(i[0].shape[1]))

    def keep_gradient(model, optimizer, loss, grad_clip):  # the gradient train_sft is about to apply
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        return apply_update(model, optimizer, loss, grad_clip)
    monkeypatch.setattr(sft, "apply_update", keep_gradient)
    monkeypatch.setattr(distributed, "LENGTH_CHUNKS", 4)
    losses = train_sft(model, examples, epochs=1, batch_size=4, lr=1e-2, pad_id=tok.eot_id)
    ends = sorted(max(j for j, m in enumerate(mask) if m) for _, mask in examples)  # each row's last target
    assert widths == ends and len(set(widths)) == 4

    x, y = next(sft_batches(examples, 4, model.cfg.block_size, tok.eot_id, random.Random(0)))
    logits = by_hand(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1)
    loss.backward()
    assert losses == [pytest.approx(loss.item(), rel=1e-5)]
    assert torch.allclose(grads[0], torch.cat([p.grad.flatten() for p in by_hand.parameters()]), atol=1e-6)
    assert grads[0].abs().max() > 1e-2
