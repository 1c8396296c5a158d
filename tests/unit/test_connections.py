"""The capped site against the pinned aiohttp: the private attributes it
reads (connections.internals) are there, and its own listener is the one
aiohttp stops. An aiohttp upgrade that renames them fails here."""

from __future__ import annotations

import asyncio

from aiohttp import ClientSession, web

from cache_proxy.connections import CappedSite, internals
from devstack.process import free_port


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


async def test_the_capped_site_serves_with_aiohttp_s_handler_arguments_and_stops() -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, keepalive_timeout=7.5)
    await runner.setup()
    port = free_port()
    site = CappedSite(runner, "127.0.0.1", port, limit=4, busy=lambda c: True, on_refuse=print)
    try:
        await site.start()
        aiohttp = internals(site)
        assert aiohttp.server is runner.server
        assert aiohttp.backlog == 128  # aiohttp's default for a site
        assert aiohttp.handler_kwargs["keepalive_timeout"] == 7.5  # what runner setup passed on
        async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as reply:
            assert (reply.status, await reply.json()) == (200, {"hello": "world"})
    finally:
        await runner.cleanup()
    try:  # aiohttp closed the site's listener (adopt_listener): nothing answers
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    writer.close()
    raise AssertionError("the capped site's listener outlived runner.cleanup()")
