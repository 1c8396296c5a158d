"""App factory: resources live in cleanup_ctx and are stored under AppKeys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry
from tritonclient.http.aio import InferenceServerClient

from cache_proxy import routes
from cache_proxy.admission import Admission
from cache_proxy.backend import ModelTracker, TritonBackend
from cache_proxy.breaker import RedisBreaker
from cache_proxy.cache import PredictionCache
from cache_proxy.drain import Drain
from cache_proxy.guard import abuse_controls
from cache_proxy.identity import refresh_identity
from cache_proxy.keys import (
    BACKEND,
    CACHE,
    DRAIN,
    LIMITER,
    METRICS,
    SERVICES,
    SETTINGS,
    TRACKER,
)
from cache_proxy.metrics import Metrics
from cache_proxy.middleware import errors_and_metrics
from cache_proxy.ratelimit import RateLimiter
from cache_proxy.service import Services
from cache_proxy.settings import Settings, api_key_set, redacted
from cache_proxy.singleflight import SingleFlight

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[errors_and_metrics, abuse_controls],
        # cache_proxy.body decodes gzip/deflate itself, within limits, as 4xx errors
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[TRACKER] = ModelTracker()
    app[DRAIN] = Drain()
    app.cleanup_ctx.extend([redis_ctx, triton_ctx, services_ctx, model_refresh_ctx])
    routes.setup(app)
    if keys := api_key_set(settings):
        log.info("authentication: %d API key(s); /predict and /model need a Bearer key", len(keys))
    return app


def connect_redis(settings: Settings) -> Redis | RedisCluster | None:
    """A pooled client (connects lazily, reconnects by itself), or None."""
    if not settings.redis_url:
        return None
    timeout = settings.redis_timeout_seconds
    if settings.redis_cluster:
        # One quick retry: a failed shard must not hold requests for seconds;
        # the cache is bypassed (REDIS_RETRY_SECONDS) and tried again later.
        return RedisCluster.from_url(
            settings.redis_url,
            retry=Retry(NoBackoff(), retries=1),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    return Redis.from_url(
        settings.redis_url,
        health_check_interval=30,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = connect_redis(settings)
    breaker = RedisBreaker(settings.redis_retry_seconds, app[METRICS])
    app[CACHE] = PredictionCache(
        redis, ttl=settings.cache_ttl_seconds, breaker=breaker, metrics=app[METRICS]
    )
    app[LIMITER] = RateLimiter(
        redis,
        rate=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        breaker=breaker,
        metrics=app[METRICS],
    )
    log.info("cache: %s (%s)", await app[CACHE].ping(), redacted(settings.redis_url) or "disabled")
    if settings.rate_limit_per_second > 0:
        log.info(
            "rate limit: %g cost units/s per client, burst %d%s",
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            "" if redis is not None else " (NOT enforced: needs REDIS_URL)",
        )
    yield
    if redis is not None:
        await redis.aclose()


async def triton_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = InferenceServerClient(settings.triton_url, conn_limit=200)
    app[BACKEND] = TritonBackend(
        client, settings.triton_model, settings.triton_max_batch, app[METRICS]
    )
    yield
    await client.close()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Bundle what /predict needs, once Redis and Triton clients exist."""
    settings = app[SETTINGS]
    app[SERVICES] = Services(
        cache=app[CACHE],
        backend=app[BACKEND],
        tracker=app[TRACKER],
        flights=SingleFlight(),
        admission=Admission(
            settings.max_inflight_cost,
            settings.max_queued_cost,
            settings.admission_timeout_seconds,
            app[METRICS],
        ),
        max_chunk_rows=settings.triton_max_batch,
    )
    yield


async def model_refresh_ctx(app: web.Application) -> AsyncIterator[None]:
    interval = app[SETTINGS].model_refresh_seconds

    async def loop() -> None:
        # Every inference response refreshes the identity too, so under traffic
        # this loop sends nothing; when idle it polls once per interval.
        while True:
            if app[TRACKER].age() >= interval:
                await refresh_identity(app)
            wait = interval - app[TRACKER].age()  # negative if Triton did not answer
            await asyncio.sleep(wait if wait > 0 else interval)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
