"""A listening site with a cap on open client connections, whose HTTP
framing errors (bad chunked encoding, header lines over 8 KiB, garbage instead
of HTTP) are JSON errors like every other: aiohttp answers those before any
middleware runs, in plain text, and logs each with a traceback at ERROR.

At the cap, a newcomer still gets in if some connection is idle (between
requests, or still sending its headers): the oldest idle one is closed for
it. Only when every connection is busy with a request is the newcomer refused
with 429 `overloaded`. So hundreds of idle or slow-header connections cannot
lock honest clients out; slow bodies are bounded by BODY_TIMEOUT_SECONDS and
idle or slow-header connections by KEEPALIVE_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from cache_proxy.errors import MalformedRequest, Overloaded

log = logging.getLogger(__name__)

REFUSED = Overloaded("too many open connections; retry shortly")
REFUSAL_BODY = json.dumps(REFUSED.body()).encode()
REFUSAL = (
    f"HTTP/1.1 {REFUSED.status} Too Many Requests\r\nContent-Type: application/json\r\n"
    f"Retry-After: {REFUSED.retry_after:.0f}\r\nConnection: close\r\n"
    f"Content-Length: {len(REFUSAL_BODY)}\r\n\r\n"
).encode() + REFUSAL_BODY


class Refusal(asyncio.Protocol):
    """Answers 429 and hangs up, without reading the request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REFUSAL)
        transport.close()


class JsonErrors(RequestHandler):
    """aiohttp's connection handler, with client framing errors as
    `{"error", "error_type": "malformed_request"}` and a debug log line."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        reason = (message or str(exc) or "bad request").strip().splitlines()[0][:200]
        log.debug("malformed HTTP from %s: %s", request.remote, reason)
        response = web.json_response(
            MalformedRequest(f"malformed HTTP request: {reason}").body(), status=status
        )
        response.force_close()
        return response


@dataclass(frozen=True)
class Internals:
    """What a site of our own needs that aiohttp keeps private: the low-level
    server, the listen backlog, and the arguments `server()` gives each
    connection handler. Read only here (`internals`), and checked against the
    pinned aiohttp by a unit test."""

    server: web.Server
    backlog: int
    handler_kwargs: dict[str, Any]


def internals(site: web.BaseSite) -> Internals:
    server = site._runner.server
    if not isinstance(server, web.Server):
        raise TypeError(f"aiohttp changed: the runner's server is {type(server).__name__}")
    return Internals(server, site._backlog, server._kwargs)


def adopt_listener(site: web.BaseSite, listener: asyncio.AbstractServer) -> None:
    """Make `listener` the site's, so `site.stop()` closes it (aiohttp's `_server`)."""
    site._server = listener


def new_connection(aiohttp: Internals) -> RequestHandler:
    """What `server()` makes, as JsonErrors."""
    return JsonErrors(aiohttp.server, loop=asyncio.get_running_loop(), **aiohttp.handler_kwargs)


class CappedSite(web.BaseSite):
    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limit: int,
        busy: Callable[[RequestHandler], bool],
        on_refuse: Callable[[str], None],
    ) -> None:
        super().__init__(runner)
        self.host, self.port, self.limit = host, port, limit
        self.busy = busy
        self.on_refuse = on_refuse

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        aiohttp = internals(self)

        def protocol() -> asyncio.Protocol:
            connections = aiohttp.server.connections  # oldest first
            if len(connections) < self.limit:
                return new_connection(aiohttp)
            idle = next((c for c in connections if not self.busy(c)), None)
            if idle is None:
                self.on_refuse("connection_cap")
                return Refusal()
            idle.force_close()
            self.on_refuse("idle_connection_closed")
            return new_connection(aiohttp)

        loop = asyncio.get_running_loop()
        listener = await loop.create_server(
            protocol, self.host, self.port, backlog=aiohttp.backlog, reuse_address=True
        )
        adopt_listener(self, listener)
