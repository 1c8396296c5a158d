"""Freed memory given back to the system after a burst of large requests.

glibc's malloc keeps the memory a burst freed: large request bodies, their
decoded texts and the tokenizer's buffers leave the heap full of free holes it
only returns from the top. Under the attacks of perf/attacks.py (long texts, a
memory flood) the proxy's resident set rose from ~100 MiB to ~250 and stayed,
the next attack adding to it: past the pod's 256 MiB limit (k8s), an OOM kill.
So, every CHECK_SECONDS, when the resident set grew by more than
MEMORY_TRIM_ABOVE_MIB over its lowest, `malloc_trim(0)` (in a worker
thread: it releases the GIL) returns every free page
(perf/README.md, "Memory after attacks"). Not on a libc without it (musl,
macOS): then this is off, said once in the log.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from cache_proxy.metrics import Metrics

CHECK_SECONDS = 1.0
BACKOFF_SECONDS = 5.0
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
log = logging.getLogger(__name__)

Trim = Callable[[], object]
Resident = Callable[[], int]


def libc_trim() -> Trim | None:
    """glibc's `malloc_trim(0)`, or None where there is none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols, libc's among them
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def resident_bytes() -> int:
    """This process's resident set (Linux: /proc/self/statm)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


@dataclass
class TrimPolicy:
    """When to trim: the resident set grew by more than `above` bytes over
    the lowest it has been, and the last trim gave back much or is
    BACKOFF_SECONDS old (memory in use cannot be given back: no point
    trying every second)."""

    above: int
    lowest: int
    not_before: float = 0.0

    def due(self, resident: int, now: float) -> bool:
        self.lowest = min(self.lowest, resident)
        return resident - self.lowest > self.above and now >= self.not_before

    def trimmed(self, before: int, after: int, now: float) -> None:
        if before - after < self.above // 2:
            self.not_before = now + BACKOFF_SECONDS


async def trim_when_grown(
    above_bytes: int,
    metrics: Metrics,
    trim: Trim,
    resident: Resident = resident_bytes,
    every: float = CHECK_SECONDS,
) -> None:
    """Every `every` seconds, trim when TrimPolicy says so; runs until cancelled."""
    loop = asyncio.get_running_loop()
    policy = TrimPolicy(above_bytes, resident())
    while True:
        await asyncio.sleep(every)
        before = resident()
        if not policy.due(before, loop.time()):
            continue
        await asyncio.to_thread(trim)
        after = resident()
        policy.trimmed(before, after, loop.time())
        given = max(0, before - after)
        metrics.memory_trims.inc()
        metrics.memory_trimmed_bytes.inc(given)
        log.debug("memory: %d MiB given back (%d MiB resident)", given >> 20, after >> 20)


def trimmer(above_mib: int, metrics: Metrics) -> asyncio.Task[None] | None:
    """The background trim, or None when off (0) or not possible here."""
    if above_mib <= 0:
        return None
    trim = libc_trim()
    if trim is None or not os.path.exists("/proc/self/statm"):
        log.info("memory: freed memory is not trimmed here (no glibc malloc_trim or /proc)")
        return None
    return asyncio.create_task(trim_when_grown(above_mib << 20, metrics, trim))
