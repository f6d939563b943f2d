"""Supervised fine-tuning on chat exchanges, the loss on the assistant's tokens only.

Used by R1's cold start and rejection-sampling stages and by distillation. An example is the (ids, mask)
pair of r1mini.formats.chat_ids; the prompt's tokens are context, not targets.
"""
from __future__ import annotations

import math
import random

import torch
import torch.distributed as dist
from tqdm import tqdm

from r1mini.device import autocast
from r1mini.distributed import accumulate, is_main, length_chunks, rank_and_world, training_forward
from r1mini.memory import micro_batch
from r1mini.optim import apply_update, learning_rate


def sft_targets(ids: list[int], mask: list[bool], pad_id: int, length: int) -> tuple[list[int], list[int]]:
    """Input and target rows of one example, right-padded to `length` + 1 tokens: target j is ids[j + 1]
    where that token is the assistant's, and -1 (ignored by the loss) elsewhere."""
    ids, mask = ids[:length + 1], mask[:length + 1]
    x = ids[:-1] + [pad_id] * (length - len(ids) + 1)
    y = [t if m else -1 for t, m in zip(ids[1:], mask[1:])]
    return x, y + [-1] * (length - len(y))


def sft_batches(examples: list[tuple[list[int], list[bool]]], batch_size: int, block_size: int, pad_id: int,
                rng: random.Random):
    """One epoch of shuffled (x, y) batches, each padded to its longest example (at most block_size)."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    for i in range(0, len(order), batch_size):
        batch = [examples[j] for j in order[i:i + batch_size]]
        length = min(block_size, max(len(ids) for ids, _ in batch) - 1)
        rows = [sft_targets(ids, mask, pad_id, length) for ids, mask in batch]
        yield torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def train_sft(model, examples: list[tuple[list[int], list[bool]]], *, epochs: int, batch_size: int, lr: float,
              pad_id: int, seed: int = 0, warmup: int = 10, weight_decay: float = 0.0, grad_clip: float = 1.0,
              micro_batch_size: int = 0, desc: str = "sft", log=None) -> list[float]:
    """AdamW with warmup and cosine decay over `epochs` passes; returns the loss of every step.

    Under torchrun every rank draws the same global batches and trains on its contiguous slice (DDP). A
    slice runs in chunks by length whose gradients accumulate, each cut after its longest row's last target
    (distributed.length_chunks: the padding after it changes nothing but the work), and in micro-batches of
    micro_batch_size rows if fewer (0: as many rows as fit the device's memory, all of them on the CPU).
    The loss is the mean over the global batch's assistant tokens, whatever the number of ranks and
    chunks: each chunk's mean is weighted by its share of those tokens (times the world size, as DDP
    averages the ranks' gradients).
    """
    if not examples:
        raise ValueError("no SFT examples: the stage that builds them kept nothing")
    device = next(model.parameters()).device
    rank, world = rank_and_world()
    model.mtp.requires_grad_(False)  # MTP drafts are trained in pretraining only; frozen, DDP waits for no grads
    forward = training_forward(model, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    rng = random.Random(seed)  # the same on every rank: the same global batches
    total = epochs * math.ceil(len(examples) / batch_size)
    losses: list[float] = []
    model.train()
    bar = tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, disable=not is_main())
    for epoch in range(epochs):
        for x, y in sft_batches(examples, batch_size, model.cfg.block_size, pad_id, rng):
            step = len(losses)
            # SFT's cosine runs over all of its steps, the warmup's included (decay_from=0)
            scale = learning_rate(step, total, warmup=warmup, decay_from=0)
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
            n_tokens = (y >= 0).sum().clamp(min=1)  # assistant tokens in the global batch
            per_rank = math.ceil(len(x) / world)
            x, y = x[rank * per_rank:(rank + 1) * per_rank], y[rank * per_rank:(rank + 1) * per_rank]
            if len(x) == 0:  # a short last batch left this rank nothing: a zero-weight row keeps DDP in step
                x, y = x.new_full((1, 1), pad_id), y.new_full((1, 1), -1)
            micro = micro_batch(model, "train", len(x), x.size(1), micro_batch_size) or len(x)
            # chunks by length, each cut after its last target (distributed.length_chunks)
            chunks = [(x[rows, :width], y[rows, :width]) for rows, width in length_chunks(y >= 0, micro)]
            optimizer.zero_grad(set_to_none=True)
            total_loss = torch.zeros((), device=device)
            for _, (xm, ym) in accumulate(forward, chunks):
                weight = (ym >= 0).sum() * world / n_tokens  # 1 for one process and one micro-batch
                with autocast(device):
                    if weight == 0:  # no targets (their mean would be NaN): a zero loss that still runs DDP
                        loss = forward(xm.to(device)).float().sum() * 0.0
                    else:
                        _, loss = forward(xm.to(device), ym.to(device))
                loss = loss if weight == 1 else loss * weight.to(device)
                loss.backward()
                total_loss += loss.detach() / world
            if world > 1:
                dist.all_reduce(total_loss)
            try:
                apply_update(model, optimizer, total_loss, grad_clip)
            except FloatingPointError as e:
                raise FloatingPointError(f"{e} ({desc} step {step + 1})") from None
            losses.append(total_loss.item())
            bar.update(1)
            bar.set_postfix(loss=round(losses[-1], 3))
            if log is not None:
                log({"sft_step": step + 1, "epoch": epoch, "loss": round(losses[-1], 4)})
    bar.close()
    return losses
