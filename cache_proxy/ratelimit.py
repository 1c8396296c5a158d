"""Per-client token bucket of cost units in Redis, shared by every replica.

A /predict request reserves (`open`, a Bill) its base cost (1) and the
estimated cost of all its texts once its body is read and before any work starts (the body budget,
not the bucket, bounds what reading bodies costs), so concurrent requests
cannot run ahead of the bucket: each one has paid before it runs. /model
takes its 1 before it runs.
When it ends, the reservation is settled against the cost it had admitted to
the model (a failed request pays for work already sent): what cache hits and
concurrent requests saved is refunded, never past a full bucket. A request
costing more than the bucket holds passes only when the bucket is full, and
leaves it in debt that later requests wait out. So a client's long-run rate
is bounded in model work, not in requests.

One Lua script per call (one round trip, atomic, Redis's own clock), so
replicas never disagree about a bucket. Redis trouble never fails a request:
the limit is skipped (fail open, the shared breaker) and counted in metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from cache_proxy.breaker import REDIS_ERRORS, RedisBreaker
from cache_proxy.cache import KEY_PREFIX
from cache_proxy.errors import RateLimited
from cache_proxy.metrics import Metrics

# KEYS[1] bucket; ARGV rate (units/s), burst (capacity), cost (negative: a
# refund), force (1: charge even into debt). A cost over the burst needs a full
# bucket. Returns {allowed 0|1, tokens left, seconds until `cost` tokens are
# available} as strings (Lua numbers returned to Redis are truncated to integers).
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local force = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local need = math.min(cost, burst)
local allowed = 0
if force == 1 or tokens >= need then
  tokens = math.min(burst, tokens - cost)
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
local wait = 0
if allowed == 0 then wait = (need - tokens) / rate end
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


@dataclass
class Bill:
    """One request's charge: reserved before its work starts (RateLimiter.open),
    settled on what it spent; `decision` is the latest, for X-RateLimit-*."""

    limiter: RateLimiter
    client: str
    reserved: int  # 0 when the limit was not enforced or failed open
    decision: Decision | None

    async def settle(self, spent: int) -> None:
        """Charge `spent` against the reservation (refund or debt)."""
        settled = await self.limiter.settle(self.client, self.reserved, spent)
        if settled is not None:
            self.decision = settled


class RateLimiter:
    def __init__(
        self,
        redis: Redis | RedisCluster | None,
        *,
        rate: float,
        burst: int,
        breaker: RedisBreaker,
        metrics: Metrics,
    ) -> None:
        self.redis = redis
        self.rate = rate
        self.burst = burst
        self.breaker = breaker
        self.metrics = metrics
        self._script = redis.register_script(TOKEN_BUCKET) if redis is not None else None

    @property
    def enforced(self) -> bool:
        return self._script is not None and self.rate > 0

    async def check(self, client: str, cost: int = 1) -> Decision | None:
        """Take `cost` if the bucket holds it; None when not enforced."""
        return await self._run(client, cost, force=False)

    async def reserve(self, client: str, cost: int) -> Decision | None:
        """Take `cost` or raise RateLimited (429 with Retry-After and X-RateLimit-*);
        None when not enforced."""
        decision = await self.check(client, cost)
        if decision is not None and not decision.allowed:
            self.metrics.shed(reason="rate_limit", cost=cost)
            raise RateLimited(
                f"rate limit of {self.rate:g} cost units/s (burst {self.burst}) exceeded: "
                f"this request costs up to {cost} units",
                retry_after=decision.retry_after,
                headers=decision.headers(),
            )
        return decision

    async def open(self, client: str, estimate: int) -> Bill:
        """Reserve `estimate` (raises RateLimited) for a bill settled when the work ends."""
        decision = await self.reserve(client, estimate)
        return Bill(self, client, estimate if decision is not None else 0, decision)

    async def settle(self, client: str, reserved: int, spent: int) -> Decision | None:
        """Charge `spent` against a reservation of `reserved`: refund the rest,
        or take the excess even into debt; None when nothing changes."""
        return await self._run(client, spent - reserved, force=True) if spent != reserved else None

    async def _run(self, client: str, cost: int, *, force: bool) -> Decision | None:
        if self._script is None or self.rate <= 0:
            return None
        if not self.breaker.open:
            try:
                allowed, tokens, wait = await self._script(
                    keys=[f"{KEY_PREFIX}:ratelimit:{client}"],
                    args=[self.rate, self.burst, cost, int(force)],
                )
                return decide(int(allowed), float(tokens), float(wait), self.rate, self.burst)
            except REDIS_ERRORS as exc:
                self.breaker.trip(exc)
        if not force:  # count requests let through, not their later charges
            self.metrics.ratelimit_skipped.inc()
        return None
