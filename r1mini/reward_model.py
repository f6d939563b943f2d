"""A reward model: the SFT transformer with a scalar head, trained on preference pairs (R1 §2.3.4).

DeepSeek-R1's final RL stage scores general prompts with reward models trained on human preferences
(helpfulness judged on the final summary only, harmlessness on the whole answer). Here the pairs are made by
code (r1mini.chat_data.preference_pairs) and the model follows InstructGPT/DeepSeek: initialised from the
policy, the vocabulary head replaced by a linear map of the final hidden state at the last token to one
score r(x, y), trained with the Bradley-Terry loss -log sigmoid(r(x, y_chosen) - r(x, y_rejected)).

Conventions: a scored sequence is `chat_ids(tokenizer, prompt, reply)` (ids only), so its last token is
<|end|> and the score is read there, where causal attention has seen the whole exchange. Rows are
right-padded; `lengths` gives each row's real length, and padding after the last real token cannot change
its score. A sequence longer than the backbone's block_size keeps its *last* block_size tokens (the
reply and the <|end|> the score is read at, at the price of the prompt's start).
"""
from __future__ import annotations

import copy
import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from r1mini.device import autocast
from r1mini.distributed import unwrap
from r1mini.formats import chat_ids
from r1mini.optim import apply_update
from r1mini.model import Transformer


class RewardModel(nn.Module):
    """A scalar score on a transformer: `backbone`, the Transformer given (used as is, not copied), and `head`,
    an nn.Linear(n_embd, 1) with a bias, both zero-initialised so that every score starts at 0 and training
    at the loss log 2. The score is the head applied to the backbone's final-normed hidden state
    (Transformer.hidden) at each row's last real token."""

    def __init__(self, backbone: Transformer):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.cfg.n_embd, 1)
        # zero init: every score starts at 0, so training starts from loss log 2 rather than from noise
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, model: nn.Module) -> "RewardModel":
        """A reward model whose backbone is a deep copy of `model` (the paper initialises its RM from the SFT
        model): training the reward model must never move the policy's weights. A DDP-wrapped model is
        unwrapped first."""
        return cls(copy.deepcopy(unwrap(model)))

    @property
    def block_size(self) -> int:
        return self.backbone.cfg.block_size

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) right-padded, lengths (B,) real lengths -> float32 scores (B,), read at each row's last
        real token (position lengths - 1), so padding after it cannot change the score."""
        h = self.backbone.hidden(ids)  # (B, T, C)
        last = h[torch.arange(ids.size(0), device=ids.device), lengths.to(ids.device) - 1]  # (B, C)
        # the head in float32 even under bf16 autocast: bf16 scores (8 bits of mantissa) would tie close pairs
        with torch.autocast(last.device.type, enabled=False):
            return F.linear(last.float(), self.head.weight.float(), self.head.bias.float()).squeeze(-1)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged over pairs (P(chosen preferred) = sigmoid of the margin)."""
    return -F.logsigmoid(chosen - rejected).mean()


def encode_texts(tokenizer, prompts: list[str], replies: list[str]) -> list[list[int]]:
    return [chat_ids(tokenizer, p, r)[0] for p, r in zip(prompts, replies, strict=True)]


def encode_pairs(tokenizer, pairs: list[dict], which: str = "chosen") -> list[list[int]]:
    """Token ids of `chat_ids(prompt, pair[which])` for every pair; which is "chosen" or "rejected"."""
    if which not in ("chosen", "rejected"):
        raise ValueError(f"which must be 'chosen' or 'rejected', got {which!r}")
    return encode_texts(tokenizer, [p["prompt"] for p in pairs], [p[which] for p in pairs])


def pad_batch(seqs: list[list[int]], block_size: int, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into (ids (B, T), lengths (B,)); longer ones keep their last block_size tokens."""
    if not seqs or min(len(s) for s in seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence and no empty ones")
    seqs = [s[-block_size:] for s in seqs]
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in seqs], dtype=torch.long)
    return ids, torch.tensor([len(s) for s in seqs], dtype=torch.long)


def _scores(rm: nn.Module, seqs: list[list[int]], device, batch_size: int) -> torch.Tensor:
    """Scores of token lists in eval mode, without gradients, as a float32 CPU tensor."""
    was_training = rm.training
    rm.eval()
    out = []
    block = getattr(rm, "block_size", max(len(s) for s in seqs))
    with torch.no_grad(), autocast(torch.device(device)):
        for i in range(0, len(seqs), batch_size):
            ids, lengths = pad_batch(seqs[i:i + batch_size], block)
            out.append(rm(ids.to(device), lengths.to(device)).float().cpu())
    rm.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def score_texts(rm: nn.Module, tokenizer, prompts: list[str], replies: list[str], device,
                batch_size: int = 64) -> torch.Tensor:
    """r(prompt, reply) for each pair of strings: a float32 CPU tensor (N,), the RL reward of a reward model."""
    return _scores(rm, encode_texts(tokenizer, prompts, replies), device, batch_size)


def pairwise_accuracy(rm: nn.Module, tokenizer, pairs: list[dict], device, batch_size: int = 64) -> float:
    """Share of pairs with score(chosen) > score(rejected); a tie counts as wrong."""
    if not pairs:
        raise ValueError("pairwise_accuracy needs at least one pair")
    chosen = _scores(rm, encode_pairs(tokenizer, pairs, "chosen"), device, batch_size)
    rejected = _scores(rm, encode_pairs(tokenizer, pairs, "rejected"), device, batch_size)
    return (chosen > rejected).float().mean().item()


def train_reward_model(rm: RewardModel, tokenizer, pairs: list[dict], *, steps: int, batch_size: int, lr: float,
                       device, seed: int = 0, weight_decay: float = 0.0, grad_clip: float = 1.0,
                       log=None, progress: bool = False) -> list[float]:
    """AdamW on the Bradley-Terry loss over random batches of pairs; returns the loss of every step."""
    if not pairs:
        raise ValueError("no preference pairs to train the reward model on")
    chosen, rejected = encode_pairs(tokenizer, pairs, "chosen"), encode_pairs(tokenizer, pairs, "rejected")
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    device = torch.device(device)
    rm.train()
    losses: list[float] = []
    for step in tqdm(range(steps), desc="reward model", dynamic_ncols=True, leave=False, disable=not progress):
        batch = [rng.randrange(len(pairs)) for _ in range(batch_size)]
        # chosen and rejected rows go through one forward pass: rows [0, B) chosen, [B, 2B) rejected
        ids, lengths = pad_batch([chosen[i] for i in batch] + [rejected[i] for i in batch], rm.block_size)
        with autocast(device):
            scores = rm(ids.to(device), lengths.to(device))
        loss = bradley_terry_loss(scores[:batch_size], scores[batch_size:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        apply_update(rm, optimizer, loss.detach(), grad_clip, moe_model=rm.backbone)
        losses.append(loss.item())
        if log is not None:
            log({"rm_step": step + 1, "rm_loss": round(losses[-1], 4)})
    return losses
