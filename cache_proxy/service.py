"""Serve a /predict request: dedupe, one cache MGET, Triton for the misses only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cache_proxy.backend import ModelIdentity, ModelTracker, TritonBackend
from cache_proxy.backpressure import InflightLimit
from cache_proxy.cache import PredictionCache, Scores
from cache_proxy.contract import Prediction, to_predictions, unique
from cache_proxy.errors import ApiError, BackendUnavailable
from cache_proxy.singleflight import SingleFlight


@dataclass(frozen=True)
class PredictResult:
    predictions: list[Prediction]
    cache_status: str  # hit | miss | partial
    inference_ms: float
    fingerprint: str | None
    merged: int = 0  # texts computed by a concurrent request (single-flight)


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


Computed = tuple[Scores, ModelIdentity]


async def compute(
    texts: Sequence[str],
    *,
    backend: TritonBackend,
    tracker: ModelTracker,
    flights: SingleFlight[Computed],
    limit: InflightLimit,
    deadline: float,
) -> tuple[dict[str, Computed], list[str]]:
    """Triton scores for `texts`, each computed once across concurrent requests.

    Returns the results and the texts this call computed itself (the others
    were computed by a concurrent request and waited for).
    """
    mine, theirs = flights.claim(texts)
    results: dict[str, Computed] = {}
    try:
        if mine:
            with limit.admit(len(mine)):
                rows, identity = await backend.classify(mine, time_left(deadline))
            tracker.observe(identity)
            results = {t: (row.tolist(), identity) for t, row in zip(mine, rows, strict=True)}
            flights.resolve(results)
    except BaseException as exc:
        error = (
            exc
            if isinstance(exc, ApiError)
            else BackendUnavailable(
                "the request computing this text was abandoned; retry", retry_after=1
            )
        )
        flights.fail(mine, error)
        raise
    if theirs:
        try:
            async with asyncio.timeout(time_left(deadline)):
                done = await asyncio.gather(*(asyncio.shield(f) for f in theirs.values()))
        except TimeoutError:
            raise BackendUnavailable(
                "deadline passed waiting for inference", retry_after=1
            ) from None
        results.update(zip(theirs, done, strict=True))
    return results, mine


async def predict(
    texts: Sequence[str],
    *,
    cache: PredictionCache,
    backend: TritonBackend,
    tracker: ModelTracker,
    flights: SingleFlight[Computed],
    limit: InflightLimit,
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
    if not misses:
        assert known is not None  # hits need a known fingerprint
        return PredictResult(
            to_predictions([scores[t] for t in texts], known.labels), "hit", 0.0, known.fingerprint
        )
    started = time.monotonic()
    computed, mine = await compute(
        misses, backend=backend, tracker=tracker, flights=flights, limit=limit, deadline=deadline
    )
    fingerprints = {identity.fingerprint for _, identity in computed.values()}
    identity = next(iter(computed.values()))[1]
    stale_hits = bool(scores) and known is not None and fingerprints != {known.fingerprint}
    if len(fingerprints) > 1 or stale_hits:
        # The model changed while serving this request: recompute every text
        # with the model served now (hits were cached for the old one).
        rows, identity = await backend.classify(distinct, time_left(deadline))
        tracker.observe(identity)
        computed = {t: (row.tolist(), identity) for t, row in zip(distinct, rows, strict=True)}
        mine = distinct
    scores.update({text: value for text, (value, _) in computed.items()})
    await cache.put_many(identity.fingerprint, {t: computed[t][0] for t in mine})
    return PredictResult(
        predictions=to_predictions([scores[text] for text in texts], identity.labels),
        cache_status=cache_status(len(distinct), len(misses)),
        inference_ms=(time.monotonic() - started) * 1000,
        fingerprint=identity.fingerprint,
        merged=len(misses) - len(mine) if mine is not distinct else 0,
    )
