"""Admission: cost budget, cheapest and fairest first, bounded queue, no leaks."""

from __future__ import annotations

import asyncio
import time

import pytest

from cache_proxy.admission import Admission
from cache_proxy.errors import Overloaded
from cache_proxy.metrics import Metrics
from cache_proxy.predictor import plan_chunks


def admission(budget: int = 100, max_queued: int = 1000, timeout: float = 5.0) -> Admission:
    return Admission(budget, max_queued, timeout, Metrics())


async def hold(
    gate: Admission,
    client: str,
    cost: int,
    order: list[str],
    release: asyncio.Event,
    name: str = "",
) -> None:
    async with gate.slot(client, cost, gate.timeout):
        order.append(name or f"{client}:{cost}")
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_cheapest_waiter_goes_first_and_a_long_one_runs_alone() -> None:
    gate, order, release = admission(), [], asyncio.Event()
    first = asyncio.create_task(hold(gate, "a", 100, order, release, "long-1"))
    await settle()
    waiting = [
        asyncio.create_task(hold(gate, "a", 100, order, asyncio.Event(), "long-2")),
        asyncio.create_task(hold(gate, "a", 10, order, asyncio.Event(), "short")),
    ]
    await settle()
    assert order == ["long-1"] and gate.queued == 110
    release.set()
    await first
    await settle()
    # the short one is admitted; the long one does not fit beside it
    assert order == ["long-1", "short"] and gate.inflight == 10
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert (gate.inflight, gate.queued) == (0, 0)


async def test_similar_costs_go_in_arrival_order() -> None:
    """Cheapest first only across cost classes: within 2x of each other, the
    oldest goes first, so a stream of slightly cheaper texts cannot starve one
    (it waited out the admission timeout: 429s at 32-token texts)."""
    gate, order, release = admission(budget=100), [], asyncio.Event()
    first = asyncio.create_task(hold(gate, "a", 100, order, release, "running"))
    await settle()
    waiting = [
        asyncio.create_task(hold(gate, "a", cost, order, asyncio.Event(), name))
        for cost, name in ((60, "old-60"), (45, "newer-45"), (20, "cheap-20"))
    ]
    await settle()
    release.set()
    await first
    await settle()
    # a class cheaper goes first; then the older of the two similar ones
    assert order == ["running", "cheap-20", "old-60"]
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert (gate.inflight, gate.queued) == (0, 0)


async def stream_beside(big_cost: int, max_age: float, seconds: float) -> list[str]:
    """One chunk costing `big_cost` waits while chunks costing 3 keep coming,
    each waiting before the one in flight leaves; the order they ran in."""
    gate = Admission(10, 1000, 5.0, Metrics(), max_age=max_age)
    order: list[str] = []
    releases: dict[str, asyncio.Event] = {}

    def start(name: str, cost: int) -> asyncio.Task[None]:
        releases[name] = asyncio.Event()
        return asyncio.create_task(hold(gate, "a", cost, order, releases[name], name))

    tasks = [start("small-0", 3)]
    await settle()
    tasks.append(start("big", big_cost))  # a costlier class; never fits beside a small one
    started, n = time.monotonic(), 0
    while "big" not in order and time.monotonic() - started < seconds:
        n += 1
        tasks.append(start(f"small-{n}", 3))
        await settle()
        releases[f"small-{n - 1}"].set()
        await asyncio.sleep(0.01)
    for event in releases.values():
        event.set()
    await asyncio.gather(*tasks)
    assert (gate.inflight, gate.queued, gate.arrivals) == (0, 0, {})
    return order


@pytest.mark.parametrize("max_age", [0.05, 0.0])
async def test_a_stream_of_slightly_cheaper_work_delays_a_waiter_but_never_starves_it(
    max_age: float,
) -> None:
    started = time.monotonic()
    order = await stream_beside(big_cost=9, max_age=max_age, seconds=2)  # 3x a small one
    assert order.index("big") < len(order) - 1 and time.monotonic() - started < max_age + 0.5


async def test_much_cheaper_work_goes_first_however_long_a_chunk_waited() -> None:
    order = await stream_beside(big_cost=13, max_age=0.0, seconds=0.3)  # over 4x a small one
    assert order[-1] == "big"  # admitted only once the stream stopped


async def test_the_client_with_less_in_flight_goes_first() -> None:
    gate, order = admission(budget=100), []
    still, done = asyncio.Event(), asyncio.Event()
    held = [
        asyncio.create_task(hold(gate, "attacker", 50, order, still)),
        asyncio.create_task(hold(gate, "attacker", 40, order, done)),
    ]
    await settle()
    tasks = [
        asyncio.create_task(hold(gate, "attacker", 20, order, still, "attacker-3")),
        asyncio.create_task(hold(gate, "honest", 30, order, still, "honest")),
    ]
    await settle()
    done.set()
    await held[1]
    await settle()
    # dearer than the attacker's chunk, but its client holds nothing in flight
    assert order[2:] == ["honest", "attacker-3"]
    still.set()
    await asyncio.gather(held[0], *tasks)


async def test_a_chunk_larger_than_the_budget_runs_when_nothing_else_does() -> None:
    gate, order, release = admission(budget=50), [], asyncio.Event()
    release.set()
    await hold(gate, "a", 500, order, release)
    assert order == ["a:500"] and gate.inflight == 0


async def test_waiting_too_long_is_a_429_and_counted() -> None:
    gate, order, release = admission(timeout=0.05), [], asyncio.Event()
    hog = asyncio.create_task(hold(gate, "a", 100, order, release))
    await settle()
    with pytest.raises(Overloaded) as caught:
        async with gate.slot("b", 10, 0.05):
            pass
    assert caught.value.status == 429 and caught.value.retry_after == 1.0
    metrics = gate.metrics
    assert metrics.rejections.labels("admission_timeout")._value.get() == 1
    assert metrics.shed_cost.labels("admission_timeout")._value.get() == 10
    release.set()
    await hog
    assert (gate.inflight, gate.queued) == (0, 0)


async def test_a_full_queue_sheds_the_most_expensive_waiter() -> None:
    gate, order, release = admission(budget=10, max_queued=100), [], asyncio.Event()
    hog = asyncio.create_task(hold(gate, "a", 10, order, release))
    await settle()
    expensive = asyncio.create_task(hold(gate, "a", 90, order, asyncio.Event()))
    await settle()
    cheap = asyncio.create_task(hold(gate, "b", 20, order, release))
    await settle()
    with pytest.raises(Overloaded):
        await expensive  # shed so that the cheaper newcomer could wait
    with pytest.raises(Overloaded):  # a newcomer dearer than every waiter is refused
        async with gate.slot("c", 95, 1.0):
            pass
    release.set()
    await asyncio.gather(hog, cheap)
    assert order == ["a:10", "b:20"]
    assert gate.metrics.rejections.labels("queue_full")._value.get() == 2
    assert (gate.inflight, gate.queued) == (0, 0)


async def test_a_full_queue_refuses_a_newcomer_not_much_cheaper_than_the_waiters() -> None:
    """Similar chunks never knock each other out: with a flood of requests
    whose chunks differ a little in cost, shedding the dearer waiter for the
    cheaper newcomer would fail every request (each loses some chunk)."""
    gate, order, release = admission(budget=10, max_queued=20), [], asyncio.Event()
    hog = asyncio.create_task(hold(gate, "a", 10, order, release))
    await settle()
    waiting = [asyncio.create_task(hold(gate, "a", 10, order, release, f"w{n}")) for n in (1, 2)]
    await settle()
    for cost in (9, 3):  # cheaper than 10, but not under a quarter of it
        with pytest.raises(Overloaded):
            async with gate.slot("a", cost, 1.0):
                pass
    release.set()
    await asyncio.gather(hog, *waiting)
    assert order == ["a:10", "w1", "w2"]


async def test_budget_comes_back_after_an_error_or_a_cancel() -> None:
    gate = admission(budget=10)
    with pytest.raises(RuntimeError):
        async with gate.slot("a", 10, 1.0):
            raise RuntimeError("triton failed")
    order: list[str] = []
    hog = asyncio.create_task(hold(gate, "a", 10, order, asyncio.Event()))
    await settle()
    waiter = asyncio.create_task(hold(gate, "b", 5, order, asyncio.Event()))
    await settle()
    waiter.cancel()
    hog.cancel()
    await asyncio.gather(hog, waiter, return_exceptions=True)
    assert (gate.inflight, gate.queued, dict(gate.inflight_by_client)) == (0, 0, {})


@pytest.mark.parametrize(
    ("costs", "max_cost", "max_rows", "chunks"),
    [
        ([], 10, 4, []),
        ([3, 3, 3, 3], 10, 4, [[0, 1, 2], [3]]),
        ([3, 3, 3, 3], 100, 2, [[0, 1], [2, 3]]),
        ([50, 1, 1], 10, 4, [[0], [1, 2]]),  # dearer than the budget: alone
        ([1, 50, 1], 10, 4, [[0], [1], [2]]),
    ],
)
def test_plan_chunks(
    costs: list[int], max_cost: int, max_rows: int, chunks: list[list[int]]
) -> None:
    assert [list(c) for c in plan_chunks(costs, max_cost, max_rows)] == chunks
