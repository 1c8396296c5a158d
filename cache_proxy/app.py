"""App factory: resources live in cleanup_ctx and are stored under AppKeys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from aiohttp import web
from redis.asyncio import Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from cache_proxy import routes
from cache_proxy.admission import Admission
from cache_proxy.backend import Backend, TritonBackend
from cache_proxy.bodies import BodyBudget
from cache_proxy.breaker import RedisBreaker
from cache_proxy.cache import PredictionCache
from cache_proxy.drain import Drain
from cache_proxy.fleet import view_key
from cache_proxy.guard import abuse_controls
from cache_proxy.keys import (
    BODIES,
    DRAIN,
    LIMITER,
    METRICS,
    PREDICTOR,
    SERVED,
    SETTINGS,
    TRACING,
)
from cache_proxy.memory import trimmer
from cache_proxy.metrics import Metrics
from cache_proxy.middleware import errors_and_metrics, in_flight, traced
from cache_proxy.predictor import Predictor
from cache_proxy.ratelimit import RateLimiter
from cache_proxy.served import ServedModel
from cache_proxy.settings import Settings, redacted
from cache_proxy.tracing import Tracing, open_tracer
from cache_proxy.tracker import ModelTracker

log = logging.getLogger(__name__)


BackendOpener = Callable[[Settings, Metrics], AbstractAsyncContextManager[Backend]]
RedisConnector = Callable[[Settings], "Redis | RedisCluster | None"]
TracingOpener = Callable[[], AbstractAsyncContextManager[Tracing]]


@contextlib.asynccontextmanager
async def open_triton(settings: Settings, metrics: Metrics) -> AsyncIterator[Backend]:
    """The Triton HTTP client (pooled), closed when the app stops."""
    backend = TritonBackend(settings.triton_url, settings.triton_model, metrics)
    try:
        yield backend
    finally:
        await backend.close()


def connect_redis(settings: Settings) -> Redis | RedisCluster | None:
    """A pooled client (connects lazily, reconnects by itself), or None."""
    if not settings.redis_url:
        return None
    timeout = settings.redis_timeout_seconds
    # a password in the URL wins (redis-py applies the URL's options last)
    password = settings.redis_password or None
    if settings.redis_cluster:
        # One quick retry: a failed shard must not hold requests for seconds;
        # the cache is bypassed (REDIS_RETRY_SECONDS) and tried again later.
        return RedisCluster.from_url(
            settings.redis_url,
            retry=Retry(NoBackoff(), retries=1),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            password=password,
        )
    return Redis.from_url(
        settings.redis_url,
        health_check_interval=30,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        password=password,
    )


def create_app(
    settings: Settings,
    open_backend: BackendOpener = open_triton,
    connect: RedisConnector = connect_redis,
    open_tracing: TracingOpener = open_tracer,
) -> web.Application:
    """The proxy; the app-level tests pass a fake backend, fakeredis and an
    in-memory span exporter."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[in_flight, traced, errors_and_metrics, abuse_controls],
        # cache_proxy.body decodes gzip/deflate itself, within limits, as 4xx errors
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[DRAIN] = Drain()
    app[BODIES] = BodyBudget(
        settings.max_body_bytes_in_flight, settings.max_body_bytes, app[METRICS]
    )
    app.cleanup_ctx.extend(
        [
            lambda app: tracing_ctx(app, open_tracing),
            lambda app: services_ctx(app, open_backend, connect),
            model_refresh_ctx,
            memory_trim_ctx,
        ]
    )
    routes.setup(app)
    if keys := settings.api_keys:
        log.info("authentication: %d API key(s); /predict and /model need a Bearer key", len(keys))
    return app


async def tracing_ctx(app: web.Application, open_tracing: TracingOpener) -> AsyncIterator[None]:
    """Tracing (tracing.py), first in and last out: spans of the last
    requests are exported at shutdown."""
    async with open_tracing() as tracing:
        app[TRACING] = tracing
        yield


async def services_ctx(
    app: web.Application, open_backend: BackendOpener, connect: RedisConnector
) -> AsyncIterator[None]:
    """Redis (cache and rate limiter, one breaker) and the backend, behind one Predictor."""
    settings, metrics = app[SETTINGS], app[METRICS]
    redis = connect(settings)
    breaker = RedisBreaker(settings.redis_retry_seconds, metrics)
    cache = PredictionCache(redis, ttl=settings.cache_ttl_seconds, breaker=breaker, metrics=metrics)
    buckets, buckets_breaker = redis, breaker
    if settings.rate_limit_redis_url:  # a Redis of their own, with a breaker of its own
        own = {"redis_url": settings.rate_limit_redis_url, "redis_cluster": False}
        buckets = connect(settings.model_copy(update=own))
        buckets_breaker = RedisBreaker(settings.redis_retry_seconds, metrics, of_cache=False)
    app[LIMITER] = RateLimiter(
        buckets,
        rate=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        breaker=buckets_breaker,
        metrics=metrics,
    )
    log.info("cache: %s (%s)", await cache.ping(), redacted(settings.redis_url) or "disabled")
    if settings.rate_limit_per_second > 0:
        log.info(
            "rate limit: %g cost units/s per client, burst %d%s",
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            f" in {redacted(settings.rate_limit_redis_url)}"
            if settings.rate_limit_redis_url
            else ""
            if redis is not None
            else " (NOT enforced: needs REDIS_URL)",
        )
    admission = Admission(
        settings.max_inflight_cost,
        settings.max_queued_cost,
        settings.admission_timeout_seconds,
        metrics,
        target_seconds=settings.admission_target_seconds,
        min_budget=settings.min_inflight_cost,
    )
    try:
        async with open_backend(settings, metrics) as backend:
            app[SERVED] = ServedModel(
                backend,
                cache,
                ModelTracker(refused=metrics.model_answers_refused),
                view_key(settings.triton_url, settings.triton_model),
            )
            app[PREDICTOR] = Predictor(
                cache,
                backend,
                admission,
                app[SERVED],
                metrics,
                settings.triton_max_batch,
                request_seconds=settings.request_timeout_seconds,
            )
            yield
    finally:
        for client in {id(c): c for c in (redis, buckets) if c is not None}.values():
            await client.aclose()


async def model_refresh_ctx(app: web.Application) -> AsyncIterator[None]:
    """The served model kept current in the background (ServedModel.keep_current)."""
    task = asyncio.create_task(app[SERVED].keep_current(app[SETTINGS].model_refresh_seconds))
    yield
    await stop(task)


async def memory_trim_ctx(app: web.Application) -> AsyncIterator[None]:
    """Freed memory given back after a burst of large requests (memory.py)."""
    task = trimmer(app[SETTINGS].memory_trim_above_mib, app[METRICS])
    yield
    if task is not None:
        await stop(task)


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
