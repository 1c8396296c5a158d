"""Run the app with an explicit drain: SIGTERM -> not ready -> close -> finish -> exit.

aiohttp's own `run_app` closes the listener the moment SIGTERM arrives, so a
load balancer still routing here would see refused connections. Here:

1. SIGTERM (or SIGINT): `/health/ready` answers 503 at once; requests are still
   served, with `Connection: close`, for SHUTDOWN_DELAY_SECONDS, the time a
   load balancer needs to notice.
2. The listener closes; requests in flight get up to SHUTDOWN_TIMEOUT_SECONDS.
3. Whatever is still running is cancelled, resources are closed, exit 0.

So the process exits at most delay + timeout (+ a moment) after the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from cache_proxy.access_log import QuietAccessLogger
from cache_proxy.connections import CappedSite
from cache_proxy.keys import DRAIN, METRICS, SETTINGS

log = logging.getLogger(__name__)
CANCEL_GRACE_SECONDS = 0.5  # for handlers cancelled after the timeout to unwind


async def serve(app: web.Application) -> None:
    settings = app[SETTINGS]
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=QuietAccessLogger,
        # X-Trace-Id: a sampled request's trace (tracing.py), else -
        access_log_format='%a "%r" %s %b %Tfs trace=%{X-Trace-Id}o',
        shutdown_timeout=CANCEL_GRACE_SECONDS,
        keepalive_timeout=settings.keepalive_timeout_seconds,
    )
    await runner.setup()
    try:
        site = CappedSite(
            runner,
            settings.proxy_host,
            settings.proxy_port,
            limit=settings.max_connections,
            busy=lambda connection: connection in app[DRAIN].busy,
            on_refuse=app[METRICS].shed,
        )
        await site.start()
        log.info("listening on http://%s:%d", settings.proxy_host, settings.proxy_port)
        await until_signalled()
        await drain(app, site)
    finally:
        await runner.cleanup()
    log.info("stopped")


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


async def drain(app: web.Application, site: web.BaseSite) -> None:
    settings, state = app[SETTINGS], app[DRAIN]
    state.begin()
    log.info(
        "draining: readiness fails now; listener closes in %.1fs; in-flight requests "
        "then get up to %.1fs",
        settings.shutdown_delay_seconds,
        settings.shutdown_timeout_seconds,
    )
    await asyncio.sleep(settings.shutdown_delay_seconds)
    await site.stop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(settings.shutdown_timeout_seconds):
            await state.idle()
    if state.active:
        log.warning(
            "drain timeout: cancelling %d request(s) still in flight after %.1fs",
            state.active,
            settings.shutdown_timeout_seconds,
        )
