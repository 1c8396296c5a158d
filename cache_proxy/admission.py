"""Cost-weighted, fair admission of work to Triton, sized in time.

The budget: at most `budget` cost units are in flight to the model at once.
It is learned (`Throughput`): the cost units per second the model has been
answering, times `target_seconds`, kept within [`min_budget`, `max_budget`].
So the work ahead of an honest short request takes about `target_seconds` on
any CPU: a slow CPU gets a small budget, a fast one a large budget and larger
batches. Until the first answers are measured the budget is `min_budget`
(slow start). With `target_seconds` 0 the budget is fixed at `max_budget`.
Requests are cut into chunks of half the budget, so two chunks keep the
model busy while neither holds more than half of it.

A chunk that does not fit waits in a bounded queue. When budget frees, the
next chunk comes from the client that has been served the least cost
(start-time fair queueing: a client's tag grows by the cost of each chunk it
is granted, and a client that comes back from idle starts at the current
virtual time, so nobody saves up credit), so clients share the model in
proportion to cost served, whatever each one has queued. Within a client the
cheapest cost class goes first (costs within 2x are one class, in arrival
order), until its oldest chunk has waited `max_age` (a tenth of the timeout):
then that one goes first. No chunk, long or short, starves.

A chunk costing more than the whole budget runs when nothing else is in
flight, and the fairest waiter blocks those behind it until it fits: a long
text waits for the model to drain, never past it. So a short request waits at
most for one budget of work plus one long text that is already running.

Shedding (429 `overloaded`, never a 5xx): a chunk waits at most `timeout`.
The queue holds at most what the model can answer within `timeout` at its
learned rate (and never more than `max_queued`): past it, the newest waiter
of a client that has been served more than the newcomer's client is shed for
the newcomer, else the newest waiter of the costliest class if the newcomer
is much cheaper (under a quarter of its cost); otherwise the newcomer is
refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cache_proxy.errors import Overloaded
from cache_proxy.metrics import Metrics
from cache_proxy.throughput import Throughput

MUCH_CHEAPER = 4  # a chunk is much cheaper than another below a quarter of its cost
CHUNKS_PER_BUDGET = 2  # a chunk is at most this fraction of the budget


def much_cheaper(cost: int, than: int) -> bool:
    return cost * MUCH_CHEAPER < than


def cost_class(cost: int) -> int:
    """Costs within 2x of each other share a class (1, 2-3, 4-7, 8-15, ...)."""
    return cost.bit_length()


def learned_budget(
    rate: float | None, target_seconds: float, min_budget: int, max_budget: int
) -> int:
    """The in-flight budget for a model answering `rate` cost units/s (pure)."""
    if target_seconds <= 0:
        return max_budget
    if rate is None:
        return min_budget
    return int(min(max_budget, max(min_budget, rate * target_seconds)))


@dataclass(order=True)
class Waiter:
    cost_class: int
    seq: int
    cost: int = field(compare=False)
    client: str = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)
    since: float = field(compare=False)  # monotonic time it started waiting


def granted(waiter: Waiter) -> bool:
    future = waiter.future
    return future.done() and not future.cancelled() and future.exception() is None


class Admission:
    def __init__(
        self,
        budget: int,
        max_queued: int,
        timeout: float,
        metrics: Metrics,
        max_age: float | None = None,
        *,
        target_seconds: float = 0.0,
        min_budget: int | None = None,
        throughput: Throughput | None = None,
    ) -> None:
        self.max_budget = budget
        self.min_budget = min(budget, budget if min_budget is None else min_budget)
        self.target_seconds = target_seconds
        self.throughput = throughput or Throughput()
        self.max_queued = max_queued
        self.timeout = timeout
        self.max_age = timeout / 10 if max_age is None else max_age
        self.metrics = metrics
        self.inflight = 0
        self.queued = 0
        self.inflight_by_client: Counter[str] = Counter()
        self.waiting: dict[str, list[Waiter]] = {}  # client -> heap (cost class, seq)
        self.arrivals: dict[str, dict[int, Waiter]] = {}  # client -> seq -> waiter, oldest first
        self.tags: dict[str, float] = {}  # client -> cost served, in virtual time
        self.vtime = 0.0  # the start tag of the latest grant
        self._seq = itertools.count()
        self._observe()

    @property
    def budget(self) -> int:
        """Cost units allowed in flight now."""
        return learned_budget(
            self.throughput.rate, self.target_seconds, self.min_budget, self.max_budget
        )

    @property
    def chunk_cost(self) -> int:
        """Most cost units one chunk should hold (a dearer text goes alone)."""
        return max(1, self.budget // CHUNKS_PER_BUDGET)

    @property
    def queue_limit(self) -> int:
        """Cost units allowed to wait: what the model answers within the
        timeout at its learned rate, at most max_queued."""
        rate = self.throughput.rate
        if self.target_seconds <= 0 or rate is None:
            return self.max_queued
        return int(min(self.max_queued, max(self.budget, rate * self.timeout)))

    @contextlib.asynccontextmanager
    async def slot(self, client: str, cost: int, max_wait: float) -> AsyncIterator[None]:
        """Hold `cost` of the budget for the block, waiting at most `max_wait`;
        raises Overloaded when shed. The block's time is the model's answer time."""
        await self.acquire(client, cost, max_wait)
        answered = False
        try:
            yield
            answered = True
        finally:
            self.release(client, cost, answered=answered)

    async def acquire(self, client: str, cost: int, max_wait: float) -> None:
        """Wait for `cost` of the budget (at most `max_wait`); raises Overloaded
        when shed. The caller must `release` it once the model has answered."""
        if not self.waiting and self.fits(cost):
            self._grant(client, cost)
            return
        self._make_room(client, cost)
        future = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        waiter = Waiter(cost_class(cost), next(self._seq), cost, client, future, started)
        heapq.heappush(self.waiting.setdefault(client, []), waiter)
        self.arrivals.setdefault(client, {})[waiter.seq] = waiter
        self._queued(cost)
        self._dispatch()
        try:
            async with asyncio.timeout(max_wait):
                await waiter.future
        except TimeoutError:
            if granted(waiter):  # the grant and the timeout crossed: take the grant
                return
            self._shed(waiter, "admission_timeout")
            raise Overloaded(
                f"waited {max_wait:.1f}s for the model; retry shortly",
            ) from None
        except BaseException:  # cancelled (client gone, or a sibling chunk failed)
            if granted(waiter):
                self._free(client, cost)  # granted just as we were cancelled: nothing sent
            else:
                self._remove(waiter)
            raise
        finally:
            self.metrics.admission_wait.observe(time.monotonic() - started)

    def release(self, client: str, cost: int, *, answered: bool) -> None:
        """Give back a grant; `answered`: the model answered (its time is measured)."""
        if answered:
            self.throughput.finished(cost)
        else:
            self.throughput.failed()
        self._observe()
        self._free(client, cost)

    def fits(self, cost: int) -> bool:
        return self.inflight == 0 or self.inflight + cost <= self.budget

    def _tag(self, client: str) -> float:
        """The virtual time `client`'s next chunk would start at."""
        return max(self.tags.get(client, self.vtime), self.vtime)

    def _make_room(self, client: str, cost: int) -> None:
        """Keep the queue within its limit: shed the newest waiter of a client
        served more than `client`, else of the costliest class if `cost` is much
        cheaper (shedding for merely somewhat cheaper work of the same client
        lets a flood of similar requests knock out each other's chunks)."""
        limit = self.queue_limit
        while self.waiting and self.queued + cost > limit:
            victim = self._victim(client, cost)
            if victim is None:
                break
            self._shed(victim, "queue_full")
            if not victim.future.done():
                victim.future.set_exception(Overloaded("shed for fairer work; retry shortly"))
        if self.waiting and self.queued + cost > limit:
            self.metrics.shed(reason="queue_full", cost=cost)
            raise Overloaded(
                f"{self.queued} cost units already wait for the model; retry shortly",
            )

    def _victim(self, client: str, cost: int) -> Waiter | None:
        mine = self._tag(client)
        heavier = [c for c in self.waiting if c != client and self._tag(c) > mine]
        if heavier:
            heaviest = max(heavier, key=self._tag)
            return next(reversed(self.arrivals[heaviest].values()))
        costliest = max(itertools.chain.from_iterable(self.waiting.values()))
        return costliest if much_cheaper(cost, costliest.cost) else None

    def _next(self) -> Waiter:
        """The least-served client's cheapest waiter, or its oldest once that
        has waited max_age."""
        client = min(self.waiting, key=lambda c: (self._tag(c), self.waiting[c][0].seq))
        oldest = next(iter(self.arrivals[client].values()))
        if time.monotonic() - oldest.since >= self.max_age:
            return oldest
        return self.waiting[client][0]

    def _dispatch(self) -> None:
        """Grant waiters, next first (`_next`), while the next fits."""
        while self.waiting:
            head = self._next()
            if head.future.done():  # cancelled; its task removes it when it resumes
                self._remove(head)
                continue
            if not self.fits(head.cost):
                return
            self._remove(head)
            self._grant(head.client, head.cost)
            head.future.set_result(None)

    def _grant(self, client: str, cost: int) -> None:
        self.metrics.admitted_cost.inc(cost)
        self.vtime = start = self._tag(client)
        self.tags[client] = start + cost
        self.inflight += cost
        self.inflight_by_client[client] += cost
        self.metrics.inflight_cost.set(self.inflight)
        self.throughput.started()

    def _free(self, client: str, cost: int) -> None:
        self.inflight -= cost
        self.inflight_by_client[client] -= cost
        if self.inflight_by_client[client] <= 0:
            del self.inflight_by_client[client]
        self.metrics.inflight_cost.set(self.inflight)
        self._forget_idle_clients()
        self._dispatch()

    def _forget_idle_clients(self) -> None:
        """Drop the tags of clients with nothing waiting or in flight that would
        restart at the virtual time anyway (bounds the dict by active clients)."""
        if len(self.tags) > 2 * (len(self.waiting) + len(self.inflight_by_client)) + 64:
            self.tags = {
                c: tag
                for c, tag in self.tags.items()
                if tag > self.vtime or c in self.waiting or c in self.inflight_by_client
            }

    def _remove(self, waiter: Waiter) -> None:
        heap = self.waiting.get(waiter.client)
        if heap is None or waiter not in heap:
            return
        heap.remove(waiter)
        heapq.heapify(heap)
        del self.arrivals[waiter.client][waiter.seq]
        if not heap:
            del self.waiting[waiter.client], self.arrivals[waiter.client]
        self._queued(-waiter.cost)

    def _shed(self, waiter: Waiter, reason: str) -> None:
        self._remove(waiter)
        self.metrics.shed(reason=reason, cost=waiter.cost)

    def _queued(self, delta: int) -> None:
        self.queued += delta
        self.metrics.queued_cost.set(self.queued)

    def _observe(self) -> None:
        self.metrics.model_rate.set(self.throughput.rate or 0)
        self.metrics.inflight_budget.set(self.budget)
