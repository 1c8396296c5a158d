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

A connection is also closed once it is MAX_AGE_SECONDS old (when its call
ends), as gRPC servers bound a connection's age: a replica added by a
scale-up gets its share of new connections within that time, rather than
none until the pool's connections break.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tritonclient.http.aio import InferenceServerClient

MAX_AGE_SECONDS = 15.0


@dataclass
class Lease:
    """One call's connection; `keep` says its replica is worth asking again."""

    client: InferenceServerClient
    opened: float  # time.monotonic() when the client was made
    keep: bool = False


class Channels:
    def __init__(self, url: str, limit: int, max_age: float = MAX_AGE_SECONDS) -> None:
        self.url = url
        self.limit = limit
        self.max_age = max_age
        self.slots = asyncio.Semaphore(limit)  # calls at once, as tritonclient's conn_limit
        self.idle: list[Lease] = []  # given back, the most recently used last
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
                lease = self.idle.pop()
                lease.keep = False
            else:
                client = InferenceServerClient(self.url, conn_limit=1)
                lease = Lease(client, time.monotonic())
            try:
                yield lease
            finally:
                self._give_back(lease)
        finally:
            self.slots.release()

    def _give_back(self, lease: Lease) -> None:
        """Kept (the oldest idle one closed beyond `limit`) or closed."""
        if not lease.keep or self.closed or time.monotonic() - lease.opened > self.max_age:
            self._close(lease.client)
            return
        self.idle.append(lease)
        if len(self.idle) > self.limit:
            self._close(self.idle.pop(0).client)

    def _close(self, client: InferenceServerClient) -> None:
        """Closed in the background: the call may be unwinding a cancellation."""
        task = asyncio.ensure_future(client.close())
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    async def close(self) -> None:
        """Every idle connection, and each leased one as its call ends."""
        self.closed = True
        for lease in self.idle:
            self._close(lease.client)
        self.idle.clear()
        while self.closing:
            await asyncio.gather(*list(self.closing), return_exceptions=True)
