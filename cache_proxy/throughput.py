"""What the model delivers: cost units per second while it is busy, learned
from its own answers.

Every admitted chunk is timed from its grant to its answer. While at least
one chunk is in flight the model is busy; the rate is the cost answered over
the busy time, both decayed with a half-life of `half_life` busy seconds, so
it follows a model that slows down (a noisy neighbour, a slower replica) or
speeds up (larger batches) within seconds of work, and does not drift while
the service is idle. Failed calls end their busy interval without counting
it: a Triton that fails fast must not look fast.

The capacity is the same rate measured only over the intervals that ended
with more than one chunk in flight: the model was kept busy, so it is what
the model can do, not what a trickle of lone short texts (each mostly call
overhead) happened to ask of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MIN_BUSY_SECONDS = 0.001  # less measured than this: no rate yet


class Throughput:
    def __init__(self, half_life: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.half_life = half_life
        self.clock = clock
        self.calls = 0  # chunks in flight
        self.mark = 0.0  # start of the busy interval not yet accounted
        self.units = 0.0  # decayed cost answered
        self.seconds = 0.0  # decayed busy time
        self.saturated_units = 0.0  # the same, over intervals with more than one chunk in flight
        self.saturated_seconds = 0.0

    def started(self) -> None:
        if self.calls == 0:
            self.mark = self.clock()
        self.calls += 1

    def finished(self, cost: int) -> None:
        """A chunk of `cost` units was answered."""
        saturated = self.calls > 1
        now = self.clock()
        interval, self.mark = max(0.0, now - self.mark), now
        self.calls = max(0, self.calls - 1)
        decay = 0.5 ** (interval / self.half_life)
        self.units = self.units * decay + cost
        self.seconds = self.seconds * decay + interval
        if saturated:
            self.saturated_units = self.saturated_units * decay + cost
            self.saturated_seconds = self.saturated_seconds * decay + interval

    def failed(self) -> None:
        """A chunk ended without an answer. Its time is not cut from the busy
        interval of the chunks still in flight (the next answer counts it, so
        failures never make the model look faster); alone, it counts for
        nothing (a Triton that fails fast must not look fast either)."""
        self.calls = max(0, self.calls - 1)

    @property
    def rate(self) -> float | None:
        """Cost units per busy second, or None before enough was measured."""
        return ratio(self.units, self.seconds)

    @property
    def capacity(self) -> float | None:
        """Cost units per second while the model was kept busy, or None before
        it ever was."""
        return ratio(self.saturated_units, self.saturated_seconds)

    @property
    def best(self) -> float | None:
        """The higher of capacity and rate once the capacity is known, else the
        rate: a stall measured while chunks overlapped cannot pin the capacity
        low for clients that never overlap again (the rate follows them)."""
        capacity, rate = self.capacity, self.rate
        return max(capacity, rate or 0.0) if capacity else rate


def ratio(units: float, seconds: float) -> float | None:
    return units / seconds if seconds >= MIN_BUSY_SECONDS and units > 0 else None
