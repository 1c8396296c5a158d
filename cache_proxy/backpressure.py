"""A bound on Triton work in flight: past it, answer 429 at once, never queue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cache_proxy.errors import Overloaded
from cache_proxy.metrics import Metrics

RETRY_AFTER_SECONDS = 1.0


class InflightLimit:
    """Counts texts sent to Triton and not yet answered, up to `limit`."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.current = 0
        self.metrics = metrics

    @contextmanager
    def admit(self, texts: int) -> Iterator[None]:
        """Hold `texts` of the budget for the block, or raise Overloaded.

        A request larger than the whole budget is admitted when nothing else is
        in flight, so the limit never rejects a valid request forever.
        """
        if self.current and self.current + texts > self.limit:
            self.metrics.rejections.labels("inflight_limit").inc()
            raise Overloaded(
                f"{self.current} texts already in flight (limit {self.limit}); retry shortly",
                retry_after=RETRY_AFTER_SECONDS,
            )
        self.current += texts
        self.metrics.inflight.set(self.current)
        try:
            yield
        finally:
            self.current -= texts
            self.metrics.inflight.set(self.current)
