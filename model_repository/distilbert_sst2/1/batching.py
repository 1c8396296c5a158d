"""A dynamic batch's texts into forward passes and back, pure: plan
length-sorted micro-batches within a token budget, pack each end to end (no
padding), softmax, and split the rows back per request. (Padding for engines
that specialize per shape: shapes.py; which outputs a request needs: outputs.py.)"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group indices into micro-batches of similar length.

    Indices are sorted by length, then cut so that every micro-batch holds at
    most `token_budget` tokens in total (the texts are packed end to end, so
    that is what a forward pass computes). A single text longer than the
    budget gets its own batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in order:
        if current and tokens + lengths[index] > token_budget:
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class Packed:
    """Texts laid end to end in one row, with what attention needs to keep
    them apart: no padding token is ever computed."""

    token_ids: NDArray[np.int64]  # [T] every text's tokens, in order
    positions: NDArray[np.int64]  # [T] position of each token within its text
    segments: NDArray[np.int64]  # [T] which text each token belongs to
    starts: NDArray[np.int64]  # [B] offset of each text's first ([CLS]) token


def pack(token_ids: Sequence[Sequence[int]]) -> Packed:
    """Concatenate texts (each non-empty) into one packed sequence."""
    lengths = np.array([len(row) for row in token_ids], dtype=np.int64)
    if (lengths < 1).any():
        raise ValueError("every text needs at least one token")
    starts = np.cumsum(lengths) - lengths
    flat = np.fromiter(itertools.chain.from_iterable(token_ids), np.int64, int(lengths.sum()))
    positions = np.arange(flat.size, dtype=np.int64) - np.repeat(starts, lengths)
    segments = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    return Packed(flat, positions, segments, starts)


def softmax(logits: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """Row-wise softmax in float32; rows sum to 1."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs: NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs


def split_rows(rows: NDArray[np.float32], counts: Iterable[int]) -> list[NDArray[np.float32]]:
    """Split stacked rows back into one block per request."""
    bounds = np.cumsum([0, *counts])
    return [rows[start:end] for start, end in itertools.pairwise(bounds)]
