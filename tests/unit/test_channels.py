"""The pool of Triton connections (cache_proxy/channels.py), without a server:
a client connects only when it sends (tests/integration/test_triton_contract.py
covers which connections a real tritonserver's answers keep)."""

from __future__ import annotations

import asyncio
import time

import pytest

from cache_proxy.channels import Channels


async def test_a_call_waits_for_a_free_connection_within_its_wait() -> None:
    channels = Channels("127.0.0.1:1", limit=1)
    async with channels.lease() as held:
        held.keep = True
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5), channels.lease(wait=0.05):  # 5 s: a guard
                pass
        assert time.monotonic() - started < 1  # the lease's own wait ended it
    async with channels.lease(wait=0.05) as again:  # given back: free at once
        assert again.client is held.client
    await channels.close()


async def test_idle_connections_are_capped_and_closed_with_the_pool() -> None:
    channels = Channels("127.0.0.1:1", limit=1)
    async with channels.lease() as first:
        first.keep = True
    async with channels.lease(fresh=True) as second:  # a new one while the first is idle
        second.keep = True
    assert channels.idle == [second]  # the oldest idle one closed beyond the limit
    await channels.close()
    assert first.client._stub.closed and second.client._stub.closed
    assert not channels.closing


async def test_a_connection_older_than_its_max_age_is_closed_when_its_call_ends() -> None:
    """So a replica added by a scale-up gets new connections within that age."""
    channels = Channels("127.0.0.1:1", limit=4, max_age=0.05)
    async with channels.lease() as young:
        young.keep = True
    assert channels.idle == [young]
    async with channels.lease() as old:
        assert old is young
        old.keep = True
        await asyncio.sleep(0.1)
    assert channels.idle == []
    await channels.close()
    assert young.client._stub.closed
