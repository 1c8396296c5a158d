"""`python -m cache_proxy`: run the proxy with settings from the environment."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

from aiohttp import web

from cache_proxy.app import create_app
from cache_proxy.server import serve
from cache_proxy.settings import Settings, redacted


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"cache_proxy: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("cache_proxy").info(
        "starting (triton=%s, redis=%s)",
        settings.triton_url,
        redacted(settings.redis_url) or "disabled",
    )
    app = create_app(settings)
    app.on_startup.append(freeze_startup)  # after the app's cleanup contexts have started
    asyncio.run(serve(app))
    return 0


async def freeze_startup(app: web.Application) -> None:
    """What was built to start (modules, the app, its clients, the span
    exporter and what it imported) lives as long as the process: frozen, a
    full collection no longer walks it, and no longer pauses every request in
    flight for as long (perf/README.md, "What tracing costs")."""
    gc.collect()
    gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
