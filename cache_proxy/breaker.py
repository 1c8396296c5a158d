"""One circuit breaker for Redis, shared by the cache and the rate limiter.

Redis trouble never fails a request: after an error Redis is skipped for
`retry_seconds` (the cache is bypassed, the rate limit fails open), then tried
again, so both resume by themselves.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisClusterException, RedisError

from cache_proxy.metrics import Metrics

log = logging.getLogger(__name__)

# RedisClusterException (every cluster node down) is not a RedisError.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)


class RedisBreaker:
    def __init__(self, retry_seconds: float, metrics: Metrics, *, of_cache: bool = True) -> None:
        self.retry_seconds = retry_seconds
        self.metrics = metrics
        self.of_cache = of_cache  # its state is proxy_redis_up (the rate limit's own Redis: not)
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        """True while Redis is being skipped after a failure."""
        return time.monotonic() < self._open_until

    def trip(self, exc: BaseException) -> None:
        if not self.open:
            log.warning(
                "redis unavailable (%s): cache bypassed and rate limit not enforced for %.1fs",
                exc,
                self.retry_seconds,
            )
        self._open_until = time.monotonic() + self.retry_seconds
        if self.of_cache:
            self.metrics.redis_up.set(0)

    def reset(self) -> None:
        self._open_until = 0.0
        if self.of_cache:
            self.metrics.redis_up.set(1)
