"""Freed memory given back after a burst (cache_proxy/memory.py): when to trim
(pure rules) and the background loop (fake trim and resident readings)."""

from __future__ import annotations

import asyncio
import contextlib

from cache_proxy.memory import BACKOFF_SECONDS, TrimPolicy, libc_trim, trim_when_grown
from cache_proxy.metrics import Metrics

MIB = 2**20


def test_a_trim_is_due_once_the_resident_set_grew_past_the_threshold() -> None:
    policy = TrimPolicy(above=32 * MIB, lowest=100 * MIB)
    assert not policy.due(132 * MIB, now=0)
    assert policy.due(133 * MIB, now=0)


def test_the_lowest_resident_set_is_the_reference() -> None:
    policy = TrimPolicy(above=32 * MIB, lowest=100 * MIB)
    assert not policy.due(80 * MIB, now=0)  # it went down: measured from there
    assert policy.due(113 * MIB, now=0)


def test_a_trim_that_gave_back_little_waits_before_the_next() -> None:
    policy = TrimPolicy(above=32 * MIB, lowest=100 * MIB)
    policy.trimmed(before=240 * MIB, after=230 * MIB, now=10)  # memory in use
    assert not policy.due(240 * MIB, now=10 + BACKOFF_SECONDS - 0.1)
    assert policy.due(240 * MIB, now=10 + BACKOFF_SECONDS)
    policy.trimmed(before=240 * MIB, after=120 * MIB, now=20)  # gave back much
    assert policy.due(200 * MIB, now=20)


async def test_the_loop_trims_a_burst_and_counts_what_it_gave_back() -> None:
    readings = iter([100, 101, 180, 110, 111, 112] + [112] * 100)  # MiB, one per reading
    resident = 100 * MIB
    trims: list[int] = []

    def read() -> int:
        nonlocal resident
        resident = next(readings) * MIB
        return resident

    def trim() -> None:
        trims.append(resident)

    metrics = Metrics()
    task = asyncio.create_task(trim_when_grown(32 * MIB, metrics, trim, read, every=0.001))
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert trims == [180 * MIB]  # once, at the burst: 180 - 100 > 32
    assert metrics.memory_trims._value.get() == 1
    assert metrics.memory_trimmed_bytes._value.get() == 70 * MIB  # 180 -> 110


def test_this_libc_has_malloc_trim() -> None:
    # the images and the dev stack run on glibc: the trim must not be off there
    trim = libc_trim()
    assert trim is not None
    trim()
