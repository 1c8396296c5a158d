"""Overload: a small in-flight bound answers 429 with Retry-After, never 5xx."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ProxyFactory
from tests.http import predict

pytestmark = pytest.mark.integration


def test_cache_miss_flood_gets_429_not_5xx(start_proxy: ProxyFactory) -> None:
    url = start_proxy(max_inflight_texts="8")
    batches = [[f"flood {uuid.uuid4()}" for _ in range(8)] for _ in range(24)]
    with ThreadPoolExecutor(24) as pool:
        replies = list(pool.map(lambda texts: predict(url, texts), batches))
    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 429}, statuses
    assert 429 in statuses and 200 in statuses
    for reply in replies:
        if reply.status == 429:
            assert reply.headers["Retry-After"] == "1"
            assert reply.json()["error_type"] == "overloaded"
