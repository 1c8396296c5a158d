"""Cost-weighted, fair admission of work to Triton, sized in time.

The budget: at most `budget` cost units are in flight to the model at once.
It is learned (`Throughput`): the cost units per second the model answers
while kept busy (its capacity; until that is known, the rate it has been
answering at), times `target_seconds`, within [`min_budget`, `max_budget`].
So the work ahead of an honest short request takes about `target_seconds` on
any CPU: a slow CPU gets a small budget, a fast one a large budget and larger
batches. Until the first answers are measured the budget is `min_budget`
(slow start). With `target_seconds` 0 the budget is fixed at `max_budget`.
Requests are cut into chunks of half the budget, so two chunks keep the
model busy while neither holds more than half of it.

A chunk that does not fit waits in a bounded queue. When budget frees, the
next chunk is chosen by fair queueing on two levels, clients and then each
client's requests (flows). Tags are virtual times; a grant moves its key's
tag on by the chunk's cost, rounded up to a power of two (costs within 2x
tie, and go in arrival order).

Clients go by start tag (start-time fair queueing; the virtual time is the
start tag of the latest grant), so clients that keep the model busy share it
in proportion to the cost each has been served. A client that had nothing
waiting starts at the virtual time plus what it still owes, at most what it
has in flight: once all its work is answered it starts afresh (deficit round
robin forgets an emptied queue alike). A request's own chunks arrive
together, and its first is no debt for its next ones when that request is all
its client has, whether the first was granted before they queued or while
they waited (else a request of two chunks, queued whole, waited for its
second behind every newcomer until forgiven below). A waiter older than
DEBT_FORGIVEN_AFTER_SECONDS goes at the virtual time whatever its client
owes: clients that start afresh do not move the virtual time, so a stream of
them would otherwise keep a client with work in flight waiting (the mixed
profile: 429 after the 5 s timeout). So users who send one request at a
time go in arrival order whatever they sent before, and every text length
waits about the same (remembering more made each long text's sender wait out
its debt on its next request: mixed-length misses, p99 1.6 s against 0.9 s).

A client's requests go by finish tag (self-clocked fair queueing): a new
request's cheap chunk goes before a long text queued earlier, while the long
text's finish tag stays put as newcomers' tags grow, so it goes soon: no
chunk, long or short, starves. Users behind one address are told apart only
per request, so there a flood cannot bury a short request, and long texts
wait longer than short ones (mixed-length misses from one address: p99 about
5x p50, where one address per user gives 2x).

A chunk costing more than the whole budget runs when nothing else is in
flight, and the fairest waiter blocks those behind it until it fits: a long
text waits for the model to drain, never past it. So a short request waits at
most for one budget of work plus one long text that is already running.

Shedding (429 `overloaded`, never a 5xx): a chunk waits at most `timeout`.
The queue holds at most what the model can answer within `timeout` at its
learned rate (and never more than `max_queued`): past it, the newest chunk of
the client with the most queued is shed for the newcomer, if that is another
client whose queue is longer than the newcomer's would be with its whole
request queued; else, within the newcomer's client, the newest chunk of the
request with the most queued, if the newcomer's whole request is much cheaper
(under a quarter of it); otherwise the newcomer is refused. So in a flood of
similar requests the ones already queued finish and newcomers are refused,
rather than each newcomer failing the one before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

from cache_proxy.errors import Overloaded
from cache_proxy.metrics import Metrics
from cache_proxy.throughput import Throughput

MUCH_CHEAPER = 4  # a chunk is much cheaper than another below a quarter of its cost
# A waiter this old goes at the virtual time whatever its client owes: clients
# that start afresh start at the virtual time and do not move it, so a stream
# of them would otherwise keep a client with work in flight waiting.
DEBT_FORGIVEN_AFTER_SECONDS = 1.0
CHUNKS_PER_BUDGET = 2  # a chunk is at most this fraction of the budget


def much_cheaper(cost: int, than: int) -> bool:
    return cost * MUCH_CHEAPER < than


def rounded(cost: int) -> int:
    """`cost` up to a power of two: chunks within 2x of each other tie, and go
    in arrival order."""
    return 1 << max(0, cost - 1).bit_length()


def learned_budget(
    rate: float | None, target_seconds: float, min_budget: int, max_budget: int
) -> int:
    """The in-flight budget for a model answering `rate` cost units/s (pure)."""
    if target_seconds <= 0:
        return max_budget
    if rate is None:
        return min_budget
    return int(min(max_budget, max(min_budget, rate * target_seconds)))


@dataclass(eq=False)
class Waiter:
    seq: int
    cost: int
    client: str
    flow: Hashable
    future: asyncio.Future[None] = field(repr=False)
    since: float = field(default_factory=time.monotonic)


def granted(waiter: Waiter) -> bool:
    future = waiter.future
    return future.done() and not future.cancelled() and future.exception() is None


class FairTags:
    """Virtual-time tags of one level of fair queueing. A key (client or
    flow) that becomes backlogged starts at max(its last finish, the virtual
    time), fixed while it waits; each grant moves it on by the chunk's
    rounded cost. Keys are served by start tag (start-time fair queueing: a
    key that has had less goes first), or by finish tag (self-clocked fair
    queueing: also cheaper first, and the virtual time follows the finish
    tags, so a long chunk's fixed tag is soon passed by newcomers')."""

    def __init__(self, by_finish: bool) -> None:
        self.by_finish = by_finish
        self.last: dict[Hashable, float] = {}  # finish tag of each key's latest grant
        self.start: dict[Hashable, float] = {}  # start tag of each backlogged key
        self.vtime = 0.0

    def arrive(self, key: Hashable, debt: float = math.inf) -> None:
        """`key` has a chunk waiting. If it had none, it starts at the virtual
        time plus what it still owes from its latest grant, at most `debt`."""
        if key not in self.start:
            owed = max(0.0, self.last.get(key, 0.0) - self.vtime)
            self.start[key] = self.vtime + min(owed, debt)

    def order(self, key: Hashable, cost: int) -> float:
        start = self.start.get(key, max(self.last.get(key, 0.0), self.vtime))
        return start + rounded(cost) if self.by_finish else start

    def grant(self, key: Hashable, cost: int, *, owed: bool = True) -> None:
        """A chunk of `key` is granted; `owed` False: its next chunk, if it
        has one waiting, keeps the start tag this one had."""
        start = self.start.get(key, max(self.last.get(key, 0.0), self.vtime))
        finish = self.last[key] = start + rounded(cost)
        self.vtime = max(self.vtime, finish if self.by_finish else start)
        if key in self.start and owed:
            self.start[key] = finish  # its next chunk, if it has one

    def leave(self, key: Hashable) -> None:
        """`key` has nothing waiting any more."""
        self.start.pop(key, None)

    def forget(self, keep: Callable[[Hashable], bool]) -> None:
        """Drop the history of keys that would restart at the virtual time anyway."""
        self.last = {k: t for k, t in self.last.items() if t > self.vtime or keep(k)}


class Admission:
    def __init__(
        self,
        budget: int,
        max_queued: int,
        timeout: float,
        metrics: Metrics,
        *,
        target_seconds: float = 0.0,
        min_budget: int | None = None,
        throughput: Throughput | None = None,
    ) -> None:
        self.max_budget = budget
        self.min_budget = budget if min_budget is None else min(min_budget, budget)
        self.target_seconds = target_seconds
        self.throughput = throughput or Throughput()
        self.max_queued = max_queued
        self.timeout = timeout
        self.metrics = metrics
        self.inflight = 0
        self.queued = 0
        self.inflight_by_client: Counter[str] = Counter()
        self.inflight_by_flow: Counter[Hashable] = Counter()  # per request
        self.queued_by_client: Counter[str] = Counter()
        self.waiting: dict[str, dict[Hashable, deque[Waiter]]] = {}  # client -> flow -> FIFO
        self.clients = FairTags(by_finish=False)
        self.flows: dict[str, FairTags] = {}  # client -> its flows' tags
        self._seq = itertools.count()
        self._observe()

    @property
    def budget(self) -> int:
        """Cost units allowed in flight now."""
        return learned_budget(
            self.throughput.best, self.target_seconds, self.min_budget, self.max_budget
        )

    @property
    def chunk_cost(self) -> int:
        """Most cost units one chunk should hold (a dearer text goes alone)."""
        return max(1, self.budget // CHUNKS_PER_BUDGET)

    @property
    def queue_limit(self) -> int:
        """Cost units allowed to wait: what the model answers within the
        timeout at its learned rate, at most max_queued."""
        rate = self.throughput.best
        if self.target_seconds <= 0 or rate is None:
            return self.max_queued
        return int(min(self.max_queued, max(self.budget, rate * self.timeout)))

    @contextlib.asynccontextmanager
    async def slot(
        self, client: str, cost: int, max_wait: float, flow: Hashable = None
    ) -> AsyncIterator[None]:
        """Hold `cost` of the budget for the block, waiting at most `max_wait`;
        raises Overloaded when shed. The block's time is the model's answer time."""
        flow = object() if flow is None else flow
        await self.acquire(client, cost, max_wait, flow)
        answered = False
        try:
            yield
            answered = True
        finally:
            self.release(client, cost, answered=answered, flow=flow)

    async def acquire(
        self,
        client: str,
        cost: int,
        max_wait: float,
        flow: Hashable = None,
        ungranted: int = 0,
    ) -> None:
        """Wait for `cost` of the budget (at most `max_wait`); raises Overloaded
        when shed. The caller must `release` it once the model has answered.
        `flow`: the request the chunk belongs to (None: a flow of its own);
        `ungranted`: the cost of that request's chunks not granted yet, this
        one included (at least `cost`)."""
        flow = object() if flow is None else flow
        if not self.waiting and self.fits(cost):
            self._grant(client, flow, cost)
            return
        self._make_room(client, flow, cost, max(cost, ungranted))
        future = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        waiter = Waiter(next(self._seq), cost, client, flow, future)
        self.waiting.setdefault(client, {}).setdefault(flow, deque()).append(waiter)
        # what the client has in flight for other requests: this request's own
        # chunks arrived with this one, and are no debt for it
        debt = self.inflight_by_client[client] - self.inflight_by_flow[flow]
        self.clients.arrive(client, debt=debt)
        self._flow_tags(client).arrive(flow)
        self._queued(waiter, cost)
        self._dispatch()
        try:
            async with asyncio.timeout(max_wait):
                await waiter.future
        except TimeoutError:
            if granted(waiter):  # the grant and the timeout crossed: take the grant
                return
            self._shed(waiter, "admission_timeout")
            self._dispatch()  # it may have blocked smaller waiters behind it
            raise Overloaded(
                f"waited {max_wait:.1f}s for the model; retry shortly",
            ) from None
        except BaseException:  # cancelled (client gone, or a sibling chunk failed)
            if granted(waiter):  # granted just as we were cancelled: nothing was sent
                self.release(client, cost, answered=False, flow=flow)
            else:
                self._remove(waiter)
                self._dispatch()  # it may have blocked smaller waiters behind it
            raise
        finally:
            self.metrics.admission_wait.observe(time.monotonic() - started)

    def release(self, client: str, cost: int, *, answered: bool, flow: Hashable = None) -> None:
        """Give back a grant of `flow` (the request it was acquired for);
        `answered`: the model answered (its time is measured)."""
        if answered:
            self.throughput.finished(cost)
        else:
            self.throughput.failed()
        self._observe()
        self._free(client, cost, flow)

    def fits(self, cost: int) -> bool:
        return self.inflight == 0 or self.inflight + cost <= self.budget

    def _make_room(self, client: str, flow: Hashable, cost: int, ungranted: int) -> None:
        """Keep the queue within its limit for a chunk of `cost` whose request
        has `ungranted` not granted yet (queued, this chunk, or to come): shed
        the newest waiter of the client with the most queued, if that is
        another client whose queue is longer than this one's would be; else,
        within this client, the newest waiter of the request (flow) with the
        most queued, if this request would be much cheaper. "Would be" counts
        the whole request: judged chunk by chunk, each of a flood of similar
        requests sheds a chunk of the one before with its first chunks
        (failing it), is refused at a later one, and every request fails."""
        excess = self.queued + cost - self.queue_limit
        if not self.waiting or excess <= 0:
            return
        victims = self._victims(client, flow, ungranted, excess)
        if victims is None:  # shedding could not make room: shed nothing
            self.metrics.shed(reason="queue_full", cost=cost)
            raise Overloaded(
                f"{self.queued} cost units already wait for the model; retry shortly",
            )
        for victim in victims:
            self._shed(victim, "queue_full")
            if not victim.future.done():
                victim.future.set_exception(Overloaded("shed for fairer work; retry shortly"))
        self._dispatch()

    def _victims(
        self, client: str, flow: Hashable, ungranted: int, excess: int
    ) -> list[Waiter] | None:
        """The waiters to shed for `excess` units of room, chosen one by one as
        _make_room says, or None if they cannot make that much."""
        left = {  # (client, flow) -> its waiters not chosen yet, oldest first
            (c, f): list(q) for c, flows in self.waiting.items() for f, q in flows.items()
        }
        victims: list[Waiter] = []
        while excess > 0:
            victim = self._victim(left, client, flow, ungranted)
            if victim is None:
                return None
            left[victim.client, victim.flow].pop()
            victims.append(victim)
            excess -= victim.cost
        return victims

    @staticmethod
    def _victim(
        left: dict[tuple[str, Hashable], list[Waiter]], client: str, flow: Hashable, ungranted: int
    ) -> Waiter | None:
        queued = {cf: sum(w.cost for w in q) for cf, q in left.items()}
        by_client: Counter[str] = Counter()
        for (c, _), cost in queued.items():
            by_client[c] += cost
        longest = max(by_client, key=by_client.__getitem__, default=None)
        # this client's queue once this request is all queued
        ours = by_client[client] - queued.get((client, flow), 0) + ungranted
        if longest is not None and longest != client and by_client[longest] > ours:
            newest = [q[-1] for (c, _), q in left.items() if c == longest and q]
            return max(newest, key=lambda w: w.seq)
        flows = {f: cost for (c, f), cost in queued.items() if c == client and f != flow and cost}
        heaviest = max(flows, key=flows.__getitem__, default=None)
        if heaviest is None or not much_cheaper(ungranted, flows[heaviest]):
            return None
        return left[client, heaviest][-1]

    def _next(self) -> Waiter:
        """The head of the flow that finishes first in virtual time, within the
        client that finishes first."""
        heads = {c: self._next_of(c) for c in self.waiting}
        now = time.monotonic()

        def order(client: str) -> tuple[float, int]:
            head, tag = heads[client], self.clients.order(client, heads[client].cost)
            if now - head.since >= DEBT_FORGIVEN_AFTER_SECONDS:
                tag = min(tag, self.clients.vtime)
            return tag, head.seq

        return heads[min(heads, key=order)]

    def _next_of(self, client: str) -> Waiter:
        tags = self._flow_tags(client)
        heads = [queue[0] for queue in self.waiting[client].values()]
        return min(heads, key=lambda w: (tags.order(w.flow, w.cost), w.seq))

    def _flow_tags(self, client: str) -> FairTags:
        return self.flows.setdefault(client, FairTags(by_finish=True))

    def _dispatch(self) -> None:
        """Grant waiters, next first (`_next`), while the next fits."""
        while self.waiting:
            head = self._next()
            if head.future.done():  # cancelled; its task removes it when it resumes
                self._remove(head)
                continue
            if not self.fits(head.cost):
                return
            self._grant(head.client, head.flow, head.cost)  # tags first: it still waits
            self._remove(head)
            head.future.set_result(None)

    def _grant(self, client: str, flow: Hashable, cost: int) -> None:
        self.metrics.admitted_cost.inc(cost)
        self.clients.grant(client, cost, owed=not self._first_of_all(client, flow))
        self._flow_tags(client).grant(flow, cost)
        self.inflight += cost
        self.inflight_by_client[client] += cost
        self.inflight_by_flow[flow] += cost
        self.metrics.inflight_cost.set(self.inflight)
        self.metrics.inflight_chunks.inc()
        self.throughput.started()

    def _first_of_all(self, client: str, flow: Hashable) -> bool:
        """The chunk being granted is the first of `flow`, and that request is
        all `client` has in flight or waiting: it is no debt for the
        request's next chunks (they arrived with it)."""
        return (
            client not in self.inflight_by_client
            and self.waiting.get(client, {}).keys() <= {flow}
            and flow not in self._flow_tags(client).last
        )

    def _free(self, client: str, cost: int, flow: Hashable) -> None:
        self.inflight -= cost
        self.metrics.inflight_chunks.dec()
        if flow is not None:  # None: acquired without naming its request
            self.inflight_by_flow[flow] -= cost
            if self.inflight_by_flow[flow] <= 0:
                del self.inflight_by_flow[flow]
        self.inflight_by_client[client] -= cost
        if self.inflight_by_client[client] <= 0:
            del self.inflight_by_client[client]
            if client not in self.waiting:
                self.flows.pop(client, None)  # its requests are done or gone
        self.metrics.inflight_cost.set(self.inflight)
        self._forget_idle_clients()
        self._dispatch()

    def _forget_idle_clients(self) -> None:
        """Bound the tags by the active clients: past twice their number, idle
        clients are forgotten (forgiving at most their last chunk's share)."""
        active = len(self.waiting) + len(self.inflight_by_client)
        if len(self.clients.last) > 2 * active + 64:
            self.clients.last = {
                c: tag
                for c, tag in self.clients.last.items()
                if c in self.waiting or c in self.inflight_by_client
            }
        for client, tags in self.flows.items():
            if len(tags.last) > 64:
                tags.forget(self.waiting.get(client, {}).__contains__)

    def _remove(self, waiter: Waiter) -> None:
        flows = self.waiting.get(waiter.client, {})
        queue = flows.get(waiter.flow)
        if queue is None or waiter not in queue:
            return
        queue.remove(waiter)
        if not queue:
            del flows[waiter.flow]
            self._flow_tags(waiter.client).leave(waiter.flow)
        if not flows:
            del self.waiting[waiter.client]
            self.clients.leave(waiter.client)
            if waiter.client not in self.inflight_by_client:
                self.flows.pop(waiter.client, None)  # its requests are done or gone
        self._queued(waiter, -waiter.cost)

    def _shed(self, waiter: Waiter, reason: str) -> None:
        self._remove(waiter)
        self.metrics.shed(reason=reason, cost=waiter.cost)

    def _queued(self, waiter: Waiter, delta: int) -> None:
        self.queued += delta
        self.queued_by_client[waiter.client] += delta
        if self.queued_by_client[waiter.client] <= 0:
            del self.queued_by_client[waiter.client]
        self.metrics.queued_cost.set(self.queued)

    def _observe(self) -> None:
        self.metrics.model_rate.set(self.throughput.rate or 0)
        self.metrics.model_capacity.set(self.throughput.capacity or 0)
        self.metrics.inflight_budget.set(self.budget)
