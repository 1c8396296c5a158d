"""Graceful shutdown state: requests in flight, and whether we are draining."""

from __future__ import annotations

import asyncio
import time


class Drain:
    """Knows which connections are handling a request (the connection cap
    spares them); once `begin()` runs, readiness fails.

    The server (cache_proxy.server) calls `begin()` on SIGTERM, keeps serving
    for the shutdown delay, closes the listener, then awaits `idle()` for at
    most the shutdown timeout.
    """

    def __init__(self) -> None:
        self.busy: set[object] = set()  # connections handling a request now
        self.started_at: float | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def begin(self) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()

    @property
    def active(self) -> int:
        return len(self.busy)

    def enter(self, connection: object) -> None:
        self.busy.add(connection)
        self._idle.clear()

    def leave(self, connection: object) -> None:
        self.busy.discard(connection)
        if not self.busy:
            self._idle.set()

    async def idle(self) -> None:
        """Return once no request is being handled."""
        await self._idle.wait()
