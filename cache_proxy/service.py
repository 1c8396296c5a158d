"""Serve a /predict request: dedupe, one cache MGET, Triton for the misses only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cache_proxy.admission import Admission
from cache_proxy.backend import ModelIdentity, ModelTracker, TritonBackend
from cache_proxy.cache import PredictionCache, Scores
from cache_proxy.contract import Prediction, text_cost, to_predictions, unique
from cache_proxy.errors import ApiError, BackendUnavailable
from cache_proxy.singleflight import SingleFlight


@dataclass(frozen=True)
class PredictResult:
    predictions: list[Prediction]
    cache_status: str  # hit | miss | partial
    inference_ms: float
    fingerprint: str | None
    merged: int = 0  # texts computed by a concurrent request (single-flight)
    cost: int = 0  # cost units this request sent to the model (cache_proxy.contract)


def time_left(deadline: float) -> float:
    """Seconds left before `deadline`; past it the request fails with 503."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BackendUnavailable("request deadline passed before inference")
    return remaining


def cache_status(distinct: int, misses: int) -> str:
    if misses == 0:
        return "hit"
    return "miss" if misses == distinct else "partial"


@dataclass(frozen=True)
class Outcome:
    """One text's scores, the model that made them, and whether they came
    from the cache (possibly through a concurrent request's lookup)."""

    scores: Scores
    identity: ModelIdentity
    cached: bool


@dataclass(frozen=True)
class Services:
    """What serving a prediction needs; one per app."""

    cache: PredictionCache
    backend: TritonBackend
    tracker: ModelTracker
    flights: SingleFlight[Outcome]
    admission: Admission
    max_chunk_rows: int


def plan_chunks(costs: Sequence[int], max_cost: int, max_rows: int) -> list[range]:
    """Consecutive runs of texts, each within `max_cost` and `max_rows` (a
    text costing more than `max_cost` alone): the unit of admission, so a
    large request is admitted piece by piece between other clients' work."""
    chunks: list[range] = []
    start, total = 0, 0
    for i, cost in enumerate(costs):
        if i > start and (total + cost > max_cost or i - start >= max_rows):
            chunks.append(range(start, i))
            start, total = i, 0
        total += cost
    if start < len(costs):
        chunks.append(range(start, len(costs)))
    return chunks


async def compute(
    texts: Sequence[str],
    client: str,
    services: Services,
    deadline: float,
    on_chunk: Callable[[dict[str, Outcome]], None] = lambda outcomes: None,
) -> dict[str, Outcome]:
    """Scores for `texts` from Triton, chunk by chunk through admission, each
    written to the cache under the fingerprint of the model that made it, then
    handed to `on_chunk` (single-flight waiters need not wait for the rest)."""
    costs = [text_cost(t) for t in texts]
    chunks = plan_chunks(costs, services.admission.budget, services.max_chunk_rows)

    async def run(chunk: range) -> dict[str, Outcome]:
        part = [texts[i] for i in chunk]
        wait = min(services.admission.timeout, time_left(deadline))
        async with services.admission.slot(client, sum(costs[i] for i in chunk), wait):
            rows, identity = await services.backend.classify(part, time_left(deadline))
        services.tracker.observe(identity)
        outcomes = {
            t: Outcome(row.tolist(), identity, cached=False)
            for t, row in zip(part, rows, strict=True)
        }
        await services.cache.put_many(
            identity.fingerprint, {t: o.scores for t, o in outcomes.items()}
        )
        on_chunk(outcomes)
        return outcomes

    tasks = [asyncio.ensure_future(run(chunk)) for chunk in chunks]
    try:
        parts = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # one chunk failed: the request fails, free the others' budget
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return {t: o for part in parts for t, o in part.items()}


async def serve_claimed(
    mine: Sequence[str],
    known: ModelIdentity | None,
    client: str,
    services: Services,
    deadline: float,
) -> tuple[dict[str, Outcome], dict[str, Outcome]]:
    """Look up, then compute, the texts this request owns: (hits, computed).

    Each text is released to concurrent waiters only after it is in the cache,
    so a text is always either in flight or cached: never computed twice.
    """
    cache, flights = services.cache, services.flights
    found: list[Scores | None] = (
        await cache.get_many(known.fingerprint, mine, len(known.labels))
        if known is not None and mine
        else [None] * len(mine)
    )
    hits: dict[str, Outcome] = {}
    if known is not None:
        hits = {
            t: Outcome(s, known, cached=True)
            for t, s in zip(mine, found, strict=True)
            if s is not None
        }
    flights.resolve(hits)
    todo = [t for t in mine if t not in hits]
    computed = await compute(todo, client, services, deadline, flights.resolve) if todo else {}
    return hits, computed


async def wait_for_others(
    theirs: dict[str, asyncio.Future[Outcome]], deadline: float
) -> dict[str, Outcome]:
    """Results of texts a concurrent request is looking up or computing."""
    if not theirs:
        return {}
    try:
        async with asyncio.timeout(time_left(deadline)):
            done = await asyncio.gather(*(asyncio.shield(f) for f in theirs.values()))
    except TimeoutError:
        raise BackendUnavailable("deadline passed waiting for inference") from None
    except ApiError as exc:  # the owner's error object is shared: raise a copy of our own
        raise exc.copy() from None
    return dict(zip(theirs, done, strict=True))


async def predict(
    texts: Sequence[str], client: str, services: Services, deadline: float
) -> PredictResult:
    """Predictions for `texts` in input order; raises ApiError on backend trouble."""
    started = time.monotonic()
    distinct = unique(texts)
    known = services.tracker.current
    if not distinct:
        return PredictResult([], "hit", 0.0, known.fingerprint if known else None)
    mine, theirs = services.flights.claim(distinct)
    try:
        hits, computed = await serve_claimed(mine, known, client, services, deadline)
    except BaseException as exc:
        error = (
            exc
            if isinstance(exc, ApiError)
            else BackendUnavailable("the request computing this text was abandoned; retry")
        )
        services.flights.fail(mine, error)  # releases only what was not resolved yet
        raise
    results = {**hits, **computed, **await wait_for_others(theirs, deadline)}
    cost = sum(text_cost(t) for t in computed)
    if len({o.identity.fingerprint for o in results.values()}) > 1:
        # The model changed while serving this request (some results were
        # cached for, or computed by, the old one): recompute with the new one.
        results = await compute(distinct, client, services, deadline)
        cost += sum(text_cost(t) for t in distinct)
        if len({o.identity.fingerprint for o in results.values()}) > 1:
            raise BackendUnavailable("the model is changing; retry")
    identity = next(iter(results.values())).identity
    from_cache = sum(o.cached for o in results.values())
    return PredictResult(
        predictions=to_predictions([results[t].scores for t in texts], identity.labels),
        cache_status=cache_status(len(distinct), len(distinct) - from_cache),
        inference_ms=(time.monotonic() - started) * 1000 if from_cache < len(distinct) else 0.0,
        fingerprint=identity.fingerprint,
        merged=sum(not results[t].cached for t in theirs),
        cost=cost,
    )
