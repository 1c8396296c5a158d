"""Per-client token bucket in Redis, shared by every proxy replica.

One Lua script per request (one round trip, atomic, Redis's own clock), so
replicas never disagree about a bucket. Redis trouble never fails a request:
the limit is skipped (fail open) and counted in metrics.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from cache_proxy.cache import KEY_PREFIX
from cache_proxy.metrics import Metrics

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV rate (tokens/s), burst (capacity), cost.
# Returns {allowed 0|1, tokens left, seconds until `cost` tokens are available}
# as strings (Lua numbers returned to Redis are truncated to integers).
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if allowed == 0 then wait = (cost - tokens) / rate end
return {allowed, tostring(tokens), tostring(wait)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float  # until the bucket is full again
    retry_after: float  # until this request would be allowed (0 if allowed)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_seconds)),
        }


def decide(allowed: int, tokens: float, wait: float, rate: float, burst: int) -> Decision:
    """The script's answer as a Decision (pure)."""
    return Decision(
        allowed=bool(allowed),
        limit=burst,
        remaining=max(0, math.floor(tokens)),
        reset_seconds=max(0.0, (burst - tokens) / rate),
        retry_after=wait,
    )


class RateLimiter:
    def __init__(
        self,
        redis: Redis | RedisCluster | None,
        *,
        rate: float,
        burst: int,
        retry_seconds: float,
        metrics: Metrics,
    ) -> None:
        self.redis = redis
        self.rate = rate
        self.burst = burst
        self.retry_seconds = retry_seconds
        self.metrics = metrics
        self._script = redis.register_script(TOKEN_BUCKET) if redis is not None else None
        self._skip_until = 0.0

    async def check(self, client: str, cost: int = 1) -> Decision | None:
        """The decision for one request of `client`, or None when not enforced."""
        if self._script is None or self.rate <= 0 or time.monotonic() < self._skip_until:
            return None
        try:
            allowed, tokens, wait = await self._script(
                keys=[f"{KEY_PREFIX}:ratelimit:{client}"], args=[self.rate, self.burst, cost]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "rate limit not enforced for %.1fs: redis unavailable (%s)", self.retry_seconds, exc
            )
            self._skip_until = time.monotonic() + self.retry_seconds
            self.metrics.ratelimit_skipped.inc()
            return None
        return decide(int(allowed), float(tokens), float(wait), self.rate, self.burst)
