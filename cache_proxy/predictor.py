"""The Predictor: everything between a parsed /predict request and its scores.

It owns the per-text cache, the Triton backend, single-flight and admission;
the served model (served.py) says which release's answers it takes and what
texts cost. A request's distinct texts are claimed
(single-flight), looked up in one MGET under every fingerprint the current
release serves, and the misses computed by Triton in cost-admitted chunks,
each written to the cache under the fingerprint of the model that computed
it, after its request has the answer (the write costs the client no wait;
the texts stay claimed until cached). Model-change recomputes take the same path.

Nothing is forgotten: a chunk granted admission was sent to Triton, which
computes it whatever happens to the request, so it holds its budget until
Triton answers, and its answer is then cached, even when its request has
already failed or its client has left; the request's `Spend` counts it, and
the rate limit charges it. Only chunks still waiting for admission are
withdrawn. At shutdown, answers still coming for requests that already failed
are dropped (the exit stays within SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from cache_proxy.admission import Admission
from cache_proxy.backend import Backend, ReleaseDeclined
from cache_proxy.cache import PredictionCache, Scores
from cache_proxy.contract import Prediction, to_predictions, unique
from cache_proxy.errors import ApiError, BackendUnavailable, Overloaded, PayloadTooLarge
from cache_proxy.metrics import Metrics
from cache_proxy.served import ServedModel
from cache_proxy.singleflight import SingleFlight, has_answer
from cache_proxy.tracing import step
from cache_proxy.tracker import ModelIdentity

log = logging.getLogger(__name__)
MODEL_CHANGES_PER_REQUEST = 2  # more within one request: 503, retry
RETRY_PAUSE_SECONDS = 0.02  # grows linearly between asks that reach a retired model
# Triton computes what it was sent (it cannot cancel), so a granted chunk waits
# for its answer past its request's deadline; longer than this, Triton is stuck.
ANSWER_TIMEOUT_SECONDS = 60.0
T = TypeVar("T")


@dataclass
class Spend:
    """Cost units admitted to the model for one request, counted as they are
    granted: work sent is paid for, whether the request succeeds or not."""

    admitted: int = 0


@dataclass(frozen=True)
class PredictResult:
    predictions: list[Prediction]
    cache_status: str  # hit | miss | partial
    inference_ms: float
    fingerprints: tuple[str, ...]  # of the answers, in the order of the texts


@dataclass(frozen=True)
class Outcome:
    """One text's scores, the model that made them, and whether they came
    from the cache (possibly through a concurrent request's lookup)."""

    scores: Scores
    identity: ModelIdentity
    cached: bool


def time_left(deadline: float) -> float:
    """Seconds left before `deadline`; past it the request fails with 503."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BackendUnavailable("request deadline passed before inference")
    return remaining


def too_large(total: int, rate: float | None, seconds: float) -> str | None:
    """Why `total` cost units cannot be computed within `seconds` at `rate`
    units/s, or None if they can (or the rate is not known yet)."""
    if rate is None or total <= rate * seconds:
        return None
    return (
        f"these texts cost {total} units, about {total / rate:.1f}s of model time at "
        f"its current rate of {rate:.0f} units/s; a request's {seconds:g}s deadline "
        f"holds at most {int(rate * seconds)} units: send fewer or shorter texts"
    )


def cache_status(distinct: int, misses: int) -> str:
    if misses == 0:
        return "hit"
    return "miss" if misses == distinct else "partial"


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


class Abandoned(BackendUnavailable):
    """The request computing a text gave up for reasons of its own (it was too
    large, or it was cancelled): a request waiting for that text computes it."""


async def wait_for_others(
    theirs: dict[str, asyncio.Future[Outcome]], deadline: float
) -> dict[str, Outcome]:
    """Results of texts a concurrent request is looking up or computing; the
    texts its owner abandoned are left out (the caller computes them)."""
    if not theirs:
        return {}
    try:
        async with asyncio.timeout(time_left(deadline)):
            done = await asyncio.gather(
                *(asyncio.shield(f) for f in theirs.values()), return_exceptions=True
            )
    except TimeoutError:
        raise BackendUnavailable("deadline passed waiting for inference") from None
    for result in done:
        if isinstance(result, Abandoned):
            continue
        if isinstance(result, ApiError):
            raise result.copy() from None  # the owner's error is shared: a copy of our own
        if isinstance(result, BaseException):
            raise result
    return {t: r for t, r in zip(theirs, done, strict=True) if isinstance(r, Outcome)}


class Predictor:
    def __init__(
        self,
        cache: PredictionCache,
        backend: Backend,
        admission: Admission,
        served: ServedModel,
        metrics: Metrics,
        max_chunk_rows: int,
        request_seconds: float = 10.0,
    ) -> None:
        self.metrics = metrics
        self.cache = cache
        self.backend = backend
        self.admission = admission
        self.served = served
        self.max_chunk_rows = max_chunk_rows
        self.request_seconds = request_seconds  # a request's deadline
        self.answering: set[asyncio.Task[Any]] = set()  # granted chunks awaiting Triton
        self.flights: SingleFlight[Outcome] = SingleFlight()

    async def predict(
        self, texts: Sequence[str], client: str, deadline: float, spend: Spend | None = None
    ) -> PredictResult:
        """Predictions for `texts` in input order, all from the current model;
        raises ApiError on backend trouble. `spend` counts the cost admitted."""
        started = time.monotonic()
        spend = Spend() if spend is None else spend
        distinct = unique(texts)
        results: dict[str, Outcome] = {}
        merged: set[str] = set()
        todo = distinct
        for _ in range(MODEL_CHANGES_PER_REQUEST + 1):
            outcomes, theirs = await self._serve(todo, client, deadline, spend)
            results.update(outcomes)
            merged.update(t for t in theirs if t in outcomes and not outcomes[t].cached)
            # The model changed while serving this request (some results were
            # cached for, or computed by, the old one): those again, from the new
            # one; and the texts a concurrent request abandoned, by this one.
            todo = self._outdated(results) + [t for t in todo if t not in results]
            if not todo:
                break
        else:
            raise BackendUnavailable("the model is changing; retry")
        current = self.served.tracker.current
        identity = next(iter(results.values())).identity if results else current
        self.metrics.singleflight_merged.inc(len(merged))
        from_cache = sum(o.cached for o in results.values())
        fingerprints = dict.fromkeys(results[t].identity.fingerprint for t in distinct)
        return PredictResult(
            predictions=to_predictions(
                [results[t].scores for t in texts], identity.labels if identity else ()
            ),
            cache_status=cache_status(len(distinct), len(distinct) - from_cache),
            inference_ms=(time.monotonic() - started) * 1000 if from_cache < len(distinct) else 0,
            fingerprints=tuple(fingerprints) or ((identity.fingerprint,) if identity else ()),
        )

    async def _serve(
        self, texts: Sequence[str], client: str, deadline: float, spend: Spend
    ) -> tuple[dict[str, Outcome], set[str]]:
        """Outcomes of `texts` under the current model: the ones this request
        claims (single-flight) looked up and computed, the others awaited from
        the concurrent requests that claimed them (returned as the second part)."""
        if not texts:
            return {}, set()
        mine, theirs = self.flights.claim(texts, stale=self._is_outdated)
        try:
            hits, computed = await self._serve_claimed(
                list(mine), self.served.accepted(), client, deadline, spend
            )
        except BaseException as exc:
            error = (
                exc
                if isinstance(exc, ApiError) and not isinstance(exc, PayloadTooLarge)
                # the owner's request was too large or gone, not these texts: waiters
                # compute them themselves
                else Abandoned("the request computing this text was abandoned; retry")
            )
            self.flights.fail(mine, error)  # releases only what was not resolved yet
            raise
        if not theirs:
            return {**hits, **computed}, set()
        stored = {t for t, f in theirs.items() if has_answer(f)}  # computed, being cached
        with step("single-flight wait", texts=len(theirs)):
            others = await wait_for_others(theirs, deadline)
        others.update((t, replace(others[t], cached=True)) for t in stored if t in others)
        return {**hits, **computed, **others}, set(theirs)

    async def _serve_claimed(
        self,
        mine: Sequence[str],
        accepted: Sequence[ModelIdentity],
        client: str,
        deadline: float,
        spend: Spend,
    ) -> tuple[dict[str, Outcome], dict[str, Outcome]]:
        """Look up (under each `accepted` fingerprint, the first preferred),
        then compute, the texts this request owns: (hits, computed).

        Each text is released to concurrent waiters only after it is in the
        cache, so a text is always either in flight or cached: never computed twice.
        """
        width = len(accepted[0].labels) if accepted else 0
        fingerprints = [identity.fingerprint for identity in accepted]
        with step("cache lookup", texts=len(mine)) as span:
            found = await self.cache.get_many(fingerprints, mine, width)
            span.set_attribute("hits", sum(hit is not None for hit in found))
        hits: dict[str, Outcome] = {}
        for text, hit in zip(mine, found, strict=True):
            if hit is not None:
                which, scores = hit
                hits[text] = Outcome(scores, accepted[which], cached=True)
        self.flights.resolve(hits)
        todo = [t for t in mine if t not in hits]
        computed = await self._compute(todo, client, deadline, spend) if todo else {}
        return hits, computed

    async def _compute(
        self,
        texts: Sequence[str],
        client: str,
        deadline: float,
        spend: Spend,
    ) -> dict[str, Outcome]:
        """Scores for `texts` (claimed by this request) from Triton, chunk by
        chunk through admission, each settled for its waiters as soon as Triton
        answers it (they need not wait for the rest), then written to the cache
        under the fingerprint of the model that made it (_keep).
        Raises PayloadTooLarge, before any work, if they cannot be computed
        within a request's deadline at the model's learned capacity."""
        costs = await self.served.text_costs()(texts)
        throughput = self.admission.throughput  # no 413 before the capacity is known
        reason = too_large(
            sum(costs), throughput.capacity and throughput.best, self.request_seconds
        )
        if reason is not None:
            raise PayloadTooLarge(reason)
        chunks = plan_chunks(costs, self.admission.chunk_cost, self.max_chunk_rows)
        flow = object()  # this request's chunks: one flow of the client's fair share
        ungranted = [sum(costs)]  # a full queue judges the request whole

        async def run(chunk: range) -> dict[str, Outcome]:
            part = [texts[i] for i in chunk]
            cost = sum(costs[i] for i in chunk)
            wait = min(self.admission.timeout, time_left(deadline))
            with step("admission wait", cost=cost, texts=len(chunk)):
                await self.admission.acquire(client, cost, wait, flow, ungranted[0])
            ungranted[0] -= cost
            spend.admitted += cost
            # Sent, so paid for: the answer is awaited and cached even if this request fails.
            answer = self._detach(
                self._answer(part, [costs[i] for i in chunk], client, flow, deadline)
            )
            return await asyncio.shield(answer)

        tasks = [asyncio.ensure_future(run(chunk)) for chunk in chunks]
        try:
            async with asyncio.timeout(time_left(deadline)):
                parts = await asyncio.gather(*tasks)
        except BaseException as exc:
            for task in tasks:  # the request fails: withdraw the chunks still waiting
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable("deadline passed waiting for inference") from None
            raise
        return {t: o for part in parts for t, o in part.items()}

    async def _answer(
        self,
        texts: Sequence[str],
        costs: Sequence[int],
        client: str,
        flow: object,
        request_deadline: float,
    ) -> dict[str, Outcome]:
        """One granted chunk of request `flow`: Triton's answer (holding the chunk's
        budget until it arrives), settled for its waiters and returned, then
        cached (_keep). A call declined past the request's deadline is not asked
        again (nothing is computing)."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
        answered = False
        try:
            retries = 0
            while True:
                # A replica still serving a retired release (rolling update)
                # declines the call before computing, or, if it had not heard
                # of the new release yet, its answer is refused here; it is kept
                # under its own fingerprint (a rollback can use it). Either way
                # the chunk is asked again on a new connection, which may reach
                # a new replica.
                try:
                    with step(
                        "triton infer",
                        current=True,
                        texts=len(texts),
                        cost=sum(costs),
                        retry=retries,
                    ):
                        rows, identity = await self.backend.classify(
                            texts,
                            time_left(deadline),
                            fresh=retries > 0,
                            retired=self.served.tracker.refusing(),
                        )
                except ReleaseDeclined:  # nothing computed: nothing to wait for
                    if time.monotonic() >= request_deadline:
                        raise BackendUnavailable("the model is changing; retry") from None
                except Overloaded:  # Triton's queue policy shed it: nothing computed
                    self.metrics.shed("model_queue", sum(costs))
                    raise
                else:
                    if self.served.observe(identity):
                        break
                    await self.cache.put_many(
                        identity.fingerprint, dict(zip(texts, rows.tolist(), strict=True))
                    )
                retries += 1
                await asyncio.sleep(min(RETRY_PAUSE_SECONDS * retries, time_left(deadline)))
            answered = True
        finally:
            self.admission.release(client, sum(costs), answered=answered, flow=flow)
        outcomes = {
            text: Outcome(row.tolist(), identity, cached=False)
            for text, row in zip(texts, rows, strict=True)
        }
        self.flights.settle(outcomes)
        self._detach(self._keep(identity.fingerprint, outcomes))
        return outcomes

    async def _keep(self, fingerprint: str, outcomes: dict[str, Outcome]) -> None:
        """Cache a computed chunk, then release its texts' claims. Its request
        is answered meanwhile (a write is no reason to wait); a request that
        claims one of its texts before the write gets the settled answer, so
        no text is computed twice."""
        try:
            with step("cache write", texts=len(outcomes)):
                await self.cache.put_many(fingerprint, {t: o.scores for t, o in outcomes.items()})
        finally:
            self.flights.release(outcomes)

    def _detach(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` to its end whatever happens to the request that started it."""
        task = asyncio.create_task(work)
        self.answering.add(task)
        task.add_done_callback(self._answered)
        return task

    def _answered(self, task: asyncio.Task[Any]) -> None:
        self.answering.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its request, if still there, got it too

    def _outdated(self, results: dict[str, Outcome]) -> list[str]:
        """Texts answered by another release than the current one."""
        return [t for t, o in results.items() if self._is_outdated(o)]

    def _is_outdated(self, outcome: Outcome) -> bool:
        """Answered by another release than the current one (a settled answer
        from before a rolling update's switch is computed again, not shared)."""
        current = self.served.tracker.current
        return current is not None and outcome.identity.release != current.release
