"""Serve a /predict request: dedupe, one cache MGET, Triton for the misses only."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from cache_proxy.backend import ModelTracker, TritonBackend
from cache_proxy.cache import PredictionCache, Scores
from cache_proxy.contract import Prediction, to_predictions, unique
from cache_proxy.errors import BackendUnavailable


@dataclass(frozen=True)
class PredictResult:
    predictions: list[Prediction]
    cache_status: str  # hit | miss | partial
    inference_ms: float
    fingerprint: str | None


def time_left(deadline: float) -> float:
    """Seconds left before `deadline`; past it the request fails with 503."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BackendUnavailable("request deadline passed before inference", retry_after=1)
    return remaining


def cache_status(distinct: int, misses: int) -> str:
    if misses == 0:
        return "hit"
    return "miss" if misses == distinct else "partial"


async def predict(
    texts: Sequence[str],
    *,
    cache: PredictionCache,
    backend: TritonBackend,
    tracker: ModelTracker,
    deadline: float,
) -> PredictResult:
    """Predictions for `texts` in input order; raises ApiError on backend trouble."""
    distinct = unique(texts)
    known = tracker.current
    if not distinct:
        return PredictResult([], "hit", 0.0, known.fingerprint if known else None)
    cached: list[Scores | None] = (
        await cache.get_many(known.fingerprint, distinct, len(known.labels))
        if known is not None
        else [None] * len(distinct)
    )
    scores = {text: s for text, s in zip(distinct, cached, strict=True) if s is not None}
    misses = [text for text in distinct if text not in scores]
    identity = known
    inference_ms = 0.0
    if misses:
        started = time.monotonic()
        rows, identity = await backend.classify(misses, time_left(deadline))
        tracker.observe(identity)
        if known is not None and identity.fingerprint != known.fingerprint and scores:
            # The hits were cached for a model that is no longer served.
            misses = distinct
            rows, identity = await backend.classify(misses, time_left(deadline))
        inference_ms = (time.monotonic() - started) * 1000
        fresh = {text: row.tolist() for text, row in zip(misses, rows, strict=True)}
        scores.update(fresh)
        await cache.put_many(identity.fingerprint, fresh)
    assert identity is not None  # known, or set by the Triton call above
    return PredictResult(
        predictions=to_predictions([scores[text] for text in texts], identity.labels),
        cache_status=cache_status(len(distinct), len(misses)),
        inference_ms=inference_ms,
        fingerprint=identity.fingerprint,
    )
