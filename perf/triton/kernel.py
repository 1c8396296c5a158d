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

from devstack.repository import load_classifier, model_module


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


# One DistilBERT-base layer's Linear layers as (in, out): q, k, v, out, ffn in, ffn out.
LAYER_LINEARS = ((768, 768),) * 4 + ((768, 3072), (3072, 768))


def linear_layer_ms(tokens: int, precision: str, repeats: int = 30) -> float:
    """Median ms for one DistilBERT-base layer's Linear layers on `tokens` rows:
    the part of the model int8 speeds up, so the ceiling of its speed-up."""
    import torch

    quantized = model_module("classifier").quantized
    torch.manual_seed(0)
    layers = [
        quantized(torch.nn.Sequential(torch.nn.Linear(i, o)).eval(), precision)
        for i, o in LAYER_LINEARS
    ]
    inputs = [torch.randn(tokens, i) for i, _ in LAYER_LINEARS]
    times = []
    with torch.inference_mode():
        for n in range(repeats + 3):
            started = time.perf_counter()
            for layer, x in zip(layers, inputs, strict=True):
                layer(x)
            if n >= 3:  # the first passes warm up
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)
