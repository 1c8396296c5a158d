"""Kernel-only speed: the model's forward path in-process, no server.

Texts are tokenized outside the timed region; what is timed is what Triton's
execute() does per batch after tokenizing (plan, pack, forward, softmax), per
engine, and transformers' padded forward as the baseline packing is measured against.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from checkout.repository import load_classifier


def load(checkpoint: Path, engine: str, engines_dir: Path | None, threads: int = 2) -> Any:
    return load_classifier(checkpoint, engine, engines_dir, threads)


def sentences_per_second(
    classifier: Any, texts: Sequence[str], batch_size: int, repeats: int = 3
) -> float:
    """Median over `repeats` passes, each over its own share of `texts` in
    batches of `batch_size`: every pass sees batches (input shapes) it has not
    seen before, as a server does (OpenVINO is faster on shapes it has seen)."""
    ids = classifier.token_ids(texts)
    share = len(ids) // repeats

    def run(part: Sequence[Sequence[int]]) -> Callable[[], object]:
        return lambda: _score_all(classifier, part, batch_size)

    classifier.score_token_ids(ids[:batch_size])  # warm up
    passes = [run(ids[n * share : (n + 1) * share]) for n in range(repeats)]
    return _median_rate(share, passes)


def _score_all(classifier: Any, ids: Sequence[Sequence[int]], batch_size: int) -> None:
    for i in range(0, len(ids), batch_size):
        classifier.score_token_ids(ids[i : i + batch_size])


def cpu_ms_per_sentence(classifier: Any, texts: Sequence[str], batch_size: int) -> float:
    """CPU time of this process (every engine thread) per sentence over one
    pass of `texts` in batches of `batch_size`: what the engine takes of the
    machine per text, however many threads it spreads that over."""
    ids = classifier.token_ids(texts)
    classifier.score_token_ids(ids[:batch_size])  # warm up
    started = time.process_time()
    _score_all(classifier, ids, batch_size)
    return (time.process_time() - started) / len(ids) * 1000


def isolated_ms(classifier: Any, texts: Sequence[str], gap: float = 0.015) -> float:
    """Median time of one single-text call after `gap` seconds idle: what a
    lone client's request meets. Idle engine threads (and, on a VM, idle vCPUs)
    wake slower than a back-to-back loop suggests."""
    ids = classifier.token_ids(texts)
    classifier.score_token_ids(ids[:1])  # warm up
    times = []
    for one in ids:
        time.sleep(gap)
        started = time.perf_counter()
        classifier.score_token_ids([one])
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


MIN_CALLS = 24  # per batch size and multiple, in padding_ratios


def padding_ratios(
    classifier: Any,
    set_multiple: Callable[[int], None],
    texts: Sequence[str],
    batch_sizes: Sequence[int],
    multiples: Sequence[int],
    baseline: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[int, dict[int, float]]:
    """{multiple: {batch size: median time per call / the baseline's}}: each
    batch is scored with the engine's inputs padded to each multiple of tokens
    in turn (`set_multiple`, in alternating order), so the VM's drift cancels,
    after a pass that shows the engine every shape first. Leaves the
    baseline's multiple set."""
    ids = classifier.token_ids(texts)
    ratios: dict[int, dict[int, float]] = {m: {} for m in multiples}
    for size in batch_sizes:
        batches = [ids[i : i + size] for i in range(0, len(ids) - size + 1, size)]
        for multiple in (*multiples, baseline):  # every shape seen once
            set_multiple(multiple)
            _score_all(classifier, ids[: len(batches) * size], size)
        per_call: dict[int, list[float]] = {m: [] for m in multiples}
        rounds = -(-MIN_CALLS // len(batches))  # large batches: the few batches again
        for number, batch in enumerate(batches * rounds):
            took = {}
            order = (baseline, *multiples) if number % 2 else (*multiples, baseline)
            for multiple in order:  # alternated: no multiple always runs first
                set_multiple(multiple)
                started = clock()
                classifier.score_token_ids(batch)
                took[multiple] = clock() - started
            for multiple in multiples:
                per_call[multiple].append(took[multiple] / took[baseline])
        for multiple in multiples:
            ratios[multiple][size] = statistics.median(per_call[multiple])
    set_multiple(baseline)
    return ratios


def padded_sentences_per_second(
    checkpoint: Path, texts: Sequence[str], batch_size: int, threads: int = 2, repeats: int = 3
) -> float:
    """The same with transformers' own padded forward in torch fp32: what
    packing (no padding, fused q/k/v, [CLS]-only last layer) is measured against."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, local_files_only=True)
    model.eval()
    batches = [
        tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True,
                  return_tensors="pt")
        for i in range(0, len(texts), batch_size)
    ]  # fmt: skip

    def run() -> None:
        with torch.inference_mode():
            for batch in batches:
                torch.softmax(model(**batch).logits, dim=-1)

    run()  # warm up
    return _median_rate(len(texts), [run] * repeats)


def _median_rate(count: int, passes: Sequence[Callable[[], object]]) -> float:
    """The median rate of `count` sentences over the timed `passes`."""
    rates = []
    for run in passes:
        started = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)
