"""SIGTERM during load: every request already in flight completes."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Triton, launch_proxy
from tests.http import Reply, predict

pytestmark = pytest.mark.integration


def test_sigterm_drains_in_flight_requests(
    logs_dir: Path, triton: Triton, redis_server: int
) -> None:
    proxy = launch_proxy(
        logs_dir,
        triton_url=triton.http_url,
        redis_url=f"redis://127.0.0.1:{redis_server}/0",
        shutdown_timeout_seconds="20",
        max_inflight_texts="10000",
    )
    started = threading.Barrier(9)

    def call(_: int) -> tuple[Reply, float]:
        texts = [f"drain {uuid.uuid4()} " * 40 for _ in range(64)]
        started.wait()
        reply = predict(proxy.url, texts)
        return reply, time.monotonic()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(call, i) for i in range(8)]
        started.wait()
        time.sleep(0.05)  # the requests are in flight
        proxy.signal(signal.SIGTERM)
        signalled = time.monotonic()
        results = [f.result() for f in futures]
    replies = [reply for reply, _ in results]
    # most answers arrive after SIGTERM: they really were in flight
    assert sum(done > signalled for _, done in results) >= 4
    assert [r.status for r in replies] == [200] * 8
    assert all(len(r.json()["predictions"]) == 64 for r in replies)
    assert proxy.process is not None
    assert proxy.process.wait(30) == 0
