"""`python -m cache_proxy`: run the proxy with settings from the environment."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from cache_proxy.access_log import QuietAccessLogger
from cache_proxy.app import create_app
from cache_proxy.settings import Settings


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
        "listening on http://%s:%d (triton=%s, redis=%s)",
        settings.proxy_host,
        settings.proxy_port,
        settings.triton_url,
        settings.redis_url or "disabled",
    )
    web.run_app(
        create_app(settings),
        host=settings.proxy_host,
        port=settings.proxy_port,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        access_log_class=QuietAccessLogger,
        access_log_format='%a "%r" %s %b %Tfs',
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
