"""Tests for r1mini.reward_model: the Bradley-Terry loss by hand, scores read at the last real token (padding
cannot move them), batching helpers, pairwise accuracy with a stub, and a toy reward model that learns to
tell polite replies from rude ones on held-out prompts."""

import math

import pytest
import torch
import torch.nn as nn

from r1mini.chat_data import preference_pairs
from r1mini.formats import chat_ids
from r1mini.model import ModelConfig, Transformer, model_config
from r1mini.reward_model import (RewardModel, bradley_terry_loss, encode_pairs, pad_batch, pairwise_accuracy,
                                 score_texts, train_reward_model)
from r1mini.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(["The river Olo runs through Tarn. A b c d. 你好！" * 3], 280)


def random_rm(vocab_size: int, seed: int = 0) -> RewardModel:
    """A reward model with a random (non-zero) head and weights scaled up, so any leak would show."""
    torch.manual_seed(seed)
    rm = RewardModel(Transformer(ModelConfig(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2,
                                             n_kv_head=1, n_embd=32)))
    with torch.no_grad():
        for p in rm.backbone.parameters():
            if p.dim() >= 2:
                p.mul_(5.0)
        nn.init.normal_(rm.head.weight)
    return rm.eval()


@pytest.mark.assignment11
def test_bradley_terry_loss_by_hand():
    chosen = torch.tensor([2.0, 0.0], requires_grad=True)
    rejected = torch.tensor([0.0, 1.0], requires_grad=True)
    loss = bradley_terry_loss(chosen, rejected)
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2, rel=1e-6)
    loss.backward()
    # d/dc -log sigmoid(c - r) = -sigmoid(r - c), over 2 pairs: raise the chosen, lower the rejected
    expected = torch.tensor([-1 / (1 + math.exp(2)), -1 / (1 + math.exp(-1))]) / 2
    assert torch.allclose(chosen.grad, expected) and torch.allclose(rejected.grad, -expected)
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))


def test_hidden_is_what_forward_feeds_the_lm_head():
    model = random_rm(50).backbone
    idx = torch.randint(50, (2, 9))
    h = model.hidden(idx)
    assert h.shape == (2, 9, 32)
    assert torch.allclose(model.lm_head(h), model(idx), atol=1e-6)


@pytest.mark.assignment11
def test_score_is_read_at_the_last_real_token():
    rm = random_rm(50)
    g = torch.Generator().manual_seed(1)
    short, long = torch.randint(50, (6,), generator=g).tolist(), torch.randint(50, (11,), generator=g).tolist()
    alone = rm(torch.tensor([short]), torch.tensor([6]))
    by_hand = rm.head(rm.backbone.hidden(torch.tensor([short]))[:, -1]).squeeze(-1)
    assert torch.allclose(alone, by_hand)
    for pad in (0, 7, 49):  # padding after the last real token cannot change the score, whatever its id
        ids, lengths = pad_batch([long, short], block_size=32, pad_id=pad)
        assert ids.shape == (2, 11) and lengths.tolist() == [11, 6]
        both = rm(ids, lengths)
        assert torch.allclose(both[1], alone[0], atol=1e-5)
        assert torch.allclose(both[0], rm(torch.tensor([long]), torch.tensor([11]))[0], atol=1e-5)
    # and the score does read that token: a different length or a different last token moves it
    assert not torch.allclose(rm(ids, torch.tensor([11, 5]))[1], alone[0])
    assert not torch.allclose(rm(torch.tensor([short[:-1] + [(short[-1] + 1) % 50]]), torch.tensor([6])), alone)


def test_pad_batch_keeps_the_end_of_long_sequences():
    ids, lengths = pad_batch([[1, 2, 3, 4, 5], [6]], block_size=3, pad_id=0)
    assert ids.tolist() == [[3, 4, 5], [6, 0, 0]] and lengths.tolist() == [3, 1]
    with pytest.raises(ValueError):
        pad_batch([[1], []], block_size=3)


@pytest.mark.assignment11
def test_from_policy_copies_and_starts_at_zero(tok):
    policy = Transformer(model_config("toy", vocab_size=tok.vocab_size))
    rm = RewardModel.from_policy(policy)
    assert rm.backbone is not policy
    assert all(torch.equal(a, b) for a, b in zip(rm.backbone.parameters(), policy.parameters()))
    with torch.no_grad():
        next(rm.backbone.parameters()).add_(1.0)
    assert not torch.equal(next(rm.backbone.parameters()), next(policy.parameters()))
    scores = score_texts(rm, tok, ["Tarn?", "你好！"], ["Olo.", "你好"], "cpu")
    assert scores.dtype == torch.float32 and scores.tolist() == [0.0, 0.0]  # zero-initialised head
    fresh = RewardModel(policy)  # the constructor's head starts at zero too, bias included
    assert not fresh.head.weight.any() and not fresh.head.bias.any()


def test_score_texts_matches_forward_and_batching(tok):
    rm = random_rm(tok.vocab_size)
    prompts, replies = ["The river", "A b", "Tarn", "你好"], ["Olo.", "c d d d d d.", "runs", "你好！"]
    scores = score_texts(rm, tok, prompts, replies, "cpu")
    by_hand = [rm(torch.tensor([ids]), torch.tensor([len(ids)])).item()
               for ids in (chat_ids(tok, p, r)[0] for p, r in zip(prompts, replies))]
    assert scores.shape == (4,) and scores.tolist() == pytest.approx(by_hand, abs=1e-5)
    assert score_texts(rm, tok, prompts, replies, "cpu", batch_size=3).tolist() == pytest.approx(by_hand, abs=1e-5)
    pairs = [{"prompt": p, "chosen": r, "rejected": "x"} for p, r in zip(prompts, replies)]
    assert encode_pairs(tok, pairs, "rejected")[2] == chat_ids(tok, "Tarn", "x")[0]
    with pytest.raises(ValueError):
        encode_pairs(tok, pairs, "both")


class LengthScorer(nn.Module):
    """A stub reward model: the score is the sequence length, so longer replies win."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, ids, lengths):
        return lengths.float()


def test_pairwise_accuracy_by_hand(tok):
    pairs = [{"prompt": "A", "chosen": "b c d", "rejected": "b"},  # longer chosen: right
             {"prompt": "A", "chosen": "b", "rejected": "b c d"},  # shorter chosen: wrong
             {"prompt": "A", "chosen": "c", "rejected": "d"},  # a tie counts as wrong
             {"prompt": "A", "chosen": "d d d d", "rejected": "d"}]  # right
    for batch_size in (1, 3, 64):
        assert pairwise_accuracy(LengthScorer(), tok, pairs, "cpu", batch_size=batch_size) == 0.5
    stub = LengthScorer().train()
    pairwise_accuracy(stub, tok, pairs, "cpu")
    assert stub.training  # the mode is restored


def test_toy_reward_model_learns_politeness():
    """~200 English pairs, a correct polite reply against a rude one, then held-out prompts of that kind."""
    torch.manual_seed(0)
    english = lambda pairs: [p for p in pairs if p["lang"] == "en"]  # Chinese costs 3 byte tokens a character
    train = english(preference_pairs(300, 0, negatives=("rude",)))[:200]
    test = english(preference_pairs(300, 1, "test", negatives=("rude",)))
    assert len(train) == 200 and len(test) > 100
    tok = Tokenizer.train([p["prompt"] + " " + p["chosen"] + " " + p["rejected"] for p in train], 300)
    rm = RewardModel(Transformer(model_config("toy", vocab_size=tok.vocab_size)))
    assert pairwise_accuracy(rm, tok, test, "cpu") == 0.0  # zero head: every pair ties
    losses = train_reward_model(rm, tok, train, steps=60, batch_size=16, lr=3e-3, device="cpu", seed=0)
    assert len(losses) == 60 and losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert sum(losses[-10:]) / 10 < 0.2
    assert pairwise_accuracy(rm, tok, test, "cpu") > 0.9
