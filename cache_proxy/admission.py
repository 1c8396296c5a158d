"""Cost-weighted, fair admission of work to Triton.

At most `budget` cost units are in flight to the model at once; a chunk that
does not fit waits in a bounded queue. When budget frees, the next chunk is
the fairest one: from the client with the least cost in flight, then of that
client's cheapest cost class (costs within 2x of each other are one class),
then the oldest. So a cheap request is never queued behind a flood of
expensive ones, chunks of similar cost go in arrival order, and where clients
can be told apart (API key, trusted address) each gets its share. Within a
client, a chunk that has waited `max_age` (a tenth of the timeout) goes before
its client's cheaper chunks unless they are much cheaper (under a quarter of
its cost): a stream
of slightly cheaper work (across a class boundary) delays it but does not
starve it into a 429, while much cheaper work (a short text beside long ones)
still always goes first.

A chunk costing more than the whole budget runs when nothing else is in
flight. With the default budget (one long text's cost), a long text never
shares a forward pass with a short one: the short one waits at most one
long text's compute.

Shedding (429 `overloaded`, never a 5xx): a chunk waits at most `timeout`;
when the queue's cost would pass `max_queued`, the newest waiter of the
costliest class is dropped for a much cheaper newcomer (under a quarter of its
cost); otherwise the newcomer is refused.
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

MUCH_CHEAPER = 4  # a chunk is much cheaper than another below a quarter of its cost


def much_cheaper(cost: int, than: int) -> bool:
    return cost * MUCH_CHEAPER < than


def cost_class(cost: int) -> int:
    """Costs within 2x of each other share a class (1, 2-3, 4-7, 8-15, ...)."""
    return cost.bit_length()


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
    ) -> None:
        self.budget = budget
        self.max_queued = max_queued
        self.timeout = timeout
        self.max_age = timeout / 10 if max_age is None else max_age
        self.metrics = metrics
        self.inflight = 0
        self.queued = 0
        self.inflight_by_client: Counter[str] = Counter()
        self.waiting: dict[str, list[Waiter]] = {}  # client -> heap (cost class, seq)
        self.arrivals: dict[str, dict[int, Waiter]] = {}  # client -> seq -> waiter, oldest first
        self._seq = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, client: str, cost: int, max_wait: float) -> AsyncIterator[None]:
        """Hold `cost` of the budget for the block, waiting at most `max_wait`;
        raises Overloaded when shed."""
        await self._acquire(client, cost, max_wait)
        try:
            yield
        finally:
            self._release(client, cost)

    def fits(self, cost: int) -> bool:
        return self.inflight == 0 or self.inflight + cost <= self.budget

    async def _acquire(self, client: str, cost: int, max_wait: float) -> None:
        if not self.waiting and self.fits(cost):
            self._grant(client, cost)
            return
        self._make_room(cost)
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
                self._release(client, cost)  # granted just as we were cancelled
            else:
                self._remove(waiter)
            raise
        finally:
            self.metrics.admission_wait.observe(time.monotonic() - started)

    def _make_room(self, cost: int) -> None:
        """Keep the queue within max_queued by shedding the newest waiter of the
        costliest class, if the newcomer is much cheaper than it (shedding for a
        merely somewhat cheaper newcomer lets a flood of similar requests knock
        out each other's chunks until none completes)."""
        while self.waiting and self.queued + cost > self.max_queued:
            victim = max(itertools.chain.from_iterable(self.waiting.values()))
            if not much_cheaper(cost, victim.cost):
                break
            self._shed(victim, "queue_full")
            if not victim.future.done():
                victim.future.set_exception(Overloaded("shed for cheaper work; retry shortly"))
        if self.waiting and self.queued + cost > self.max_queued:
            self.metrics.shed(reason="queue_full", cost=cost)
            raise Overloaded(
                f"{self.queued} cost units already wait for the model; retry shortly",
            )

    def _next(self) -> Waiter:
        """The fairest client's cheapest waiter, or that client's oldest once it
        has waited max_age, unless the cheapest is much cheaper."""
        client = min(
            self.waiting,
            key=lambda c: (self.inflight_by_client[c], self.waiting[c][0]),
        )
        cheapest = self.waiting[client][0]
        oldest = next(iter(self.arrivals[client].values()))
        aged = time.monotonic() - oldest.since >= self.max_age
        if aged and not much_cheaper(cheapest.cost, oldest.cost):
            return oldest
        return cheapest

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
        self.inflight += cost
        self.inflight_by_client[client] += cost
        self.metrics.inflight_cost.set(self.inflight)

    def _release(self, client: str, cost: int) -> None:
        self.inflight -= cost
        self.inflight_by_client[client] -= cost
        if self.inflight_by_client[client] <= 0:
            del self.inflight_by_client[client]
        self.metrics.inflight_cost.set(self.inflight)
        self._dispatch()

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
