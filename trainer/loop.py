"""The training loop shared by the offline recipe and hub fine-tuning."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional
from transformers import get_linear_schedule_with_warmup

from trainer.data import Example
from trainer.first_token import classify, full_logits
from trainer.progress import Progress


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffled batches of similar-length rows (little padding, still random)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _tensors(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for r, row in enumerate(ids):
        input_ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
    return input_ids, mask


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    max_length: int,
    seed: int,
    warmup_steps: int | None = None,
    fused_adamw: bool = True,
    cls_only_last_layer: bool = True,
) -> None:
    """AdamW with linear warmup (default: 10% of steps) and decay, length-bucketed
    batches, a progress bar. The fused AdamW updates every parameter in one
    kernel. With `cls_only_last_layer` the last layer runs for [CLS] alone
    (`first_token`): the same function in less time (trainer/README.md)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    ids = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)["input_ids"]
    labels = torch.tensor([e.label for e in examples])
    steps = epochs * -(-len(examples) // batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, weight_decay=0.01, fused=fused_adamw
    )
    warmup = steps // 10 if warmup_steps is None else warmup_steps
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    pad_id = int(tokenizer.pad_token_id or 0)
    forward = classify if cls_only_last_layer else full_logits
    model.train()
    with Progress(steps, "training") as bar:
        for epoch in range(epochs):
            for batch in length_bucketed_batches([len(r) for r in ids], batch_size, rng):
                input_ids, mask = _tensors([ids[i] for i in batch], pad_id)
                loss = functional.cross_entropy(forward(model, input_ids, mask), labels[batch])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                bar.update(f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f}")
    model.eval()


def predict_labels(
    model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 256
) -> list[int]:
    """Argmax labels, in length-sorted batches (little padding), in input order
    (used for held-out accuracy)."""
    pad_id = int(tokenizer.pad_token_id or 0)
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [0] * len(ids)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, mask = _tensors([ids[i] for i in rows], pad_id)
            logits = classify(model, input_ids, mask)
            for i, label in zip(rows, logits.argmax(dim=1).tolist(), strict=True):
                out[i] = label
    return out
