"""Overload: a small admission budget and queue shed with 429 and Retry-After,
never 5xx, and no request outlives its deadline."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.http import Reply, metric_samples, predict
from tests.stack import ProxyFactory

pytestmark = pytest.mark.integration


DEADLINE_SECONDS = 3.0


def timed_predict(url: str, texts: list[str]) -> tuple[Reply, float]:
    started = time.monotonic()
    reply = predict(url, texts)
    return reply, time.monotonic() - started


def test_cache_miss_flood_gets_429_not_5xx(start_proxy: ProxyFactory) -> None:
    url = start_proxy(
        max_inflight_cost="100",  # about two of these texts at once
        max_queued_cost="400",
        admission_timeout_seconds="1",
        request_timeout_seconds=str(DEADLINE_SECONDS),
    )
    batches = [[f"flood {uuid.uuid4()}" for _ in range(8)] for _ in range(24)]
    with ThreadPoolExecutor(24) as pool:
        timed = list(pool.map(lambda texts: timed_predict(url, texts), batches))
    replies = [reply for reply, _ in timed]
    # no request outlives its deadline (plus HTTP and thread scheduling slack)
    assert max(elapsed for _, elapsed in timed) < DEADLINE_SECONDS + 1.0
    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 429}, statuses
    assert 429 in statuses and 200 in statuses
    for reply in replies:
        if reply.status == 429:
            assert reply.headers["Retry-After"] == "1"
            assert reply.json()["error_type"] == "overloaded"
    # the queue's limit refused some at once, not only the 1-s admission wait
    assert metric_samples(url)[("proxy_rejections_total", (("reason", "queue_full"),))] > 0
