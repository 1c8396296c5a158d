"""Keep-alive connections to Triton that stay with a replica worth asking.

Behind an L4 balancer (a Kubernetes Service) a connection stays with the
replica it reached when it opened. tritonclient's own pool cannot say which
of its connections a call used, so each connection here is a client of its
own (`conn_limit=1`), lent to one call at a time. A call's connection goes
back to the pool only if its replica answered, and not for a release the
caller retired. A connection whose replica declined the call, answered for
a retired release, dropped it, or did not answer in time is closed.

So during a rolling update the pool moves to the new replicas as calls
find them, and calls stop asking an old replica first. The old replicas'
connections close, and a draining tritonserver, which waits for its
connections to close, exits sooner.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tritonclient.http.aio import InferenceServerClient


@dataclass
class Lease:
    """One call's connection; `keep` says its replica is worth asking again."""

    client: InferenceServerClient
    keep: bool = False


class Channels:
    def __init__(self, url: str, limit: int) -> None:
        self.url = url
        self.limit = limit
        self.slots = asyncio.Semaphore(limit)  # calls at once, as tritonclient's conn_limit
        self.idle: list[InferenceServerClient] = []  # the most recently used last
        self.closing: set[asyncio.Task[None]] = set()
        self.closed = False

    @asynccontextmanager
    async def lease(self, fresh: bool = False, wait: float | None = None) -> AsyncIterator[Lease]:
        """A connection for one call: the most recently used idle one, or a
        new one (`fresh`: always new, so the balancer picks the replica).
        TimeoutError if none is free within `wait` seconds (`limit` calls at once)."""
        async with asyncio.timeout(wait):
            await self.slots.acquire()
        try:
            if self.idle and not fresh:
                lease = Lease(self.idle.pop())
            else:
                lease = Lease(InferenceServerClient(self.url, conn_limit=1))
            try:
                yield lease
            finally:
                self._give_back(lease)
        finally:
            self.slots.release()

    def _give_back(self, lease: Lease) -> None:
        """Kept (the oldest idle one closed beyond `limit`) or closed."""
        if not lease.keep or self.closed:
            self._close(lease.client)
            return
        self.idle.append(lease.client)
        if len(self.idle) > self.limit:
            self._close(self.idle.pop(0))

    def _close(self, client: InferenceServerClient) -> None:
        """Closed in the background: the call may be unwinding a cancellation."""
        task = asyncio.ensure_future(client.close())
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    async def close(self) -> None:
        """Every idle connection, and each leased one as its call ends."""
        self.closed = True
        for client in self.idle:
            self._close(client)
        self.idle.clear()
        while self.closing:
            await asyncio.gather(*list(self.closing), return_exceptions=True)
