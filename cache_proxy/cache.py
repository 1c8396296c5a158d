"""Per-text prediction cache in Redis, keyed by model fingerprint and text hash.

Redis trouble never fails a request: the shared breaker (cache_proxy.breaker)
bypasses the cache for a while (degraded mode), then caching resumes by itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis, RedisCluster

from cache_proxy.breaker import REDIS_ERRORS, RedisBreaker
from cache_proxy.metrics import Metrics

KEY_PREFIX = "sst2"
Scores = list[float]


def cache_key(fingerprint: str, text: str) -> str:
    """`sst2:<model fingerprint>:<blake2b-128 of the UTF-8 text>`."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
    return f"{KEY_PREFIX}:{fingerprint}:{digest}"


def decode_scores(raw: bytes | str | None, width: int) -> Scores | None:
    """A cached value, or None if absent or not `width` probabilities."""
    if raw is None:
        return None
    try:
        scores = json.loads(raw)
    except ValueError:
        return None
    if (
        not isinstance(scores, list)
        or len(scores) != width
        or not all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    ):
        return None
    return scores


class PredictionCache:
    def __init__(
        self,
        redis: Redis | RedisCluster | None,
        *,
        ttl: int,
        breaker: RedisBreaker,
        metrics: Metrics,
    ) -> None:
        self.redis = redis
        self.ttl = ttl
        self.breaker = breaker
        self.metrics = metrics
        metrics.redis_up.set(1 if redis is not None else 0)

    @property
    def state(self) -> str:
        """`ok`, `degraded` (bypassed after an error) or `disabled` (no REDIS_URL)."""
        if self.redis is None:
            return "disabled"
        return "degraded" if self.breaker.open else "ok"

    def _usable(self) -> bool:
        return self.state == "ok"

    async def get_many(
        self, fingerprints: Sequence[str], texts: Sequence[str], width: int
    ) -> list[tuple[int, Scores] | None]:
        """One MGET of every text under every fingerprint (several while a
        fleet serves one release at several numerics). Per text: the index of
        the first fingerprint that holds it and its scores, else None (a miss
        or a failure)."""
        if not texts or not fingerprints:
            return [None] * len(texts)
        if self.redis is None or not self._usable():
            self.metrics.cache.labels("error" if self.redis else "miss").inc(len(texts))
            return [None] * len(texts)
        try:
            keys = [cache_key(f, t) for f in fingerprints for t in texts]
            if isinstance(self.redis, RedisCluster):
                # one MGET per hash slot, pipelined to each shard in parallel
                raw = await self.redis.mget_nonatomic(keys)
            else:
                raw = await self.redis.mget(keys)
        except REDIS_ERRORS as exc:
            self.breaker.trip(exc)
            self.metrics.cache.labels("error").inc(len(texts))
            return [None] * len(texts)
        self.breaker.reset()
        found: list[tuple[int, Scores] | None] = [None] * len(texts)
        for n, value in enumerate(raw):
            which, i = divmod(n, len(texts))
            if found[i] is None and (scores := decode_scores(value, width)) is not None:
                found[i] = (which, scores)
        hits = sum(f is not None for f in found)
        self.metrics.cache.labels("hit").inc(hits)
        self.metrics.cache.labels("miss").inc(len(texts) - hits)
        return found

    async def put_many(self, fingerprint: str, items: Mapping[str, Scores]) -> None:
        """Write predictions back in one pipelined round trip (best effort)."""
        if not items or self.redis is None or not self._usable():
            return
        try:
            # a cluster pipeline groups the SETs by shard: one round trip each
            pipeline = (
                self.redis.pipeline()
                if isinstance(self.redis, RedisCluster)
                else self.redis.pipeline(transaction=False)
            )
            async with pipeline as pipe:
                for text, scores in items.items():
                    pipe.set(cache_key(fingerprint, text), json.dumps(scores), ex=self.ttl or None)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self.breaker.trip(exc)

    async def get_record(self, key: str) -> bytes | str | None:
        """A value other than a prediction (the shared model view), or None."""
        if self.redis is None or not self._usable():
            return None
        try:
            value: bytes | str | None = await self.redis.get(key)
        except REDIS_ERRORS as exc:
            self.breaker.trip(exc)
            return None
        return value

    async def set_record(self, key: str, value: str, seconds: int) -> None:
        """Write a value other than a prediction, for `seconds` (best effort)."""
        if self.redis is None or not self._usable():
            return
        try:
            await self.redis.set(key, value, ex=seconds)
        except REDIS_ERRORS as exc:
            self.breaker.trip(exc)

    async def ping(self) -> str:
        """Check Redis now (for readiness); returns the resulting state. A PING
        that answers never closes an open breaker: Redis may answer PING and
        still fail the calls that tripped it, and readiness probes must not
        send every request back to a failing Redis; the breaker's own timer
        and the next real call decide."""
        if self.redis is None:
            return "disabled"
        if self.breaker.open:
            return "degraded"
        try:
            if isinstance(self.redis, RedisCluster):
                # every shard holds part of the cache: all must answer
                await self.redis.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await self.redis.ping()
        except REDIS_ERRORS as exc:
            self.breaker.trip(exc)
            return "degraded"
        self.metrics.redis_up.set(1)
        return "ok"
