"""Kernel-only speed: the model's forward path in-process, no server.

Texts are tokenized outside the timed region; what is timed is what Triton's
execute() does per batch after tokenizing (plan, pad, forward, softmax).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devstack.repository import load_classifier


def load(checkpoint: Path, precision: str, threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return load_classifier(checkpoint, precision)


def sentences_per_second(
    classifier: Any, texts: Sequence[str], batch_size: int, repeats: int = 3
) -> float:
    """Median over `repeats` passes of all `texts` in batches of `batch_size`."""
    ids = classifier.token_ids(texts)
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    classifier.score_token_ids(batches[0])  # warm up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            classifier.score_token_ids(batch)
        rates.append(len(ids) / (time.perf_counter() - started))
    return statistics.median(rates)
