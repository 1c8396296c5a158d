"""Few input shapes for engines that specialize per shape (OpenVINO), pure:
pad a packed micro-batch to a multiple of a token and a text count, and list
the padded sizes a warm-up should run."""

from __future__ import annotations

import numpy as np

from batching import Packed


def bucketed(packed: Packed, tokens: int, texts: int) -> Packed:
    """`packed` padded to a multiple of `tokens` tokens and `texts` texts, so
    an engine that specializes per input shape (OpenVINO) sees few shapes.

    The padding tokens form one extra segment of their own (attention keeps
    them apart from every real text), and the padding texts repeat the first
    text's start; the caller keeps the first rows of the output only.
    """
    extra = -packed.token_ids.size % tokens
    rows = -packed.starts.size % texts
    if not (extra or rows):
        return packed
    pad_segment = packed.segments[-1] + 1 if packed.segments.size else 0
    return Packed(
        token_ids=np.concatenate([packed.token_ids, np.zeros(extra, np.int64)]),
        positions=np.concatenate([packed.positions, np.arange(extra, dtype=np.int64)]),
        segments=np.concatenate([packed.segments, np.full(extra, pad_segment, np.int64)]),
        starts=np.concatenate([packed.starts, np.full(rows, packed.starts[0], np.int64)]),
    )


def shape_warmup(limit: int, step: int, max_length: int) -> list[list[int]]:
    """Row lengths of one micro-batch per padded size an engine can meet
    (`step`, 2 x `step`, ... up to `limit` tokens), shortest first. A row
    holds at most `max_length` tokens, so a size above it takes several rows."""
    sizes = range(step, -(-limit // step) * step + 1, step)
    return [[max_length] * (size // max_length) + [size % max_length] * bool(size % max_length)
            for size in sizes]  # fmt: skip
