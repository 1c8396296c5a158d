"""Redis killed under load: no 5xx, served from Triton; caching resumes by itself."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devstack.launch import start_redis
from devstack.process import free_port
from tests.http import predict, readiness
from tests.stack import ProxyFactory

pytestmark = pytest.mark.integration


def test_redis_stopped_then_restarted(
    start_proxy: ProxyFactory, logs_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    redis, _ = start_redis(logs_dir, port=port, workdir=tmp_path)
    try:
        url = start_proxy(redis_url=f"redis://127.0.0.1:{port}/0", redis_retry_seconds="0.5")
        text = f"outage {uuid.uuid4()}"
        assert predict(url, [text]).headers["X-Cache"] == "miss"
        assert predict(url, [text]).headers["X-Cache"] == "hit"

        # killed while 4 clients keep sending: not one 5xx
        stop = threading.Event()

        def load() -> list[int]:
            statuses = []
            while not stop.is_set():
                statuses.append(predict(url, [text, f"under load {uuid.uuid4()}"]).status)
            return statuses

        with ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(load) for _ in range(4)]
            time.sleep(0.5)
            redis.kill()
            time.sleep(1.5)
            stop.set()
            statuses = [s for client in clients for s in client.result()]
        assert len(statuses) > 20
        assert set(statuses) == {200}
        for _ in range(3):
            reply = predict(url, [text, f"during outage {uuid.uuid4()}"])
            assert reply.status == 200
            assert reply.headers["X-Cache"] == "miss"  # cache bypassed, Triton answers
        ready = readiness(url, "redis", "degraded")
        assert (ready.status, ready.json()["redis"]) == (200, "degraded")

        redis, _ = start_redis(logs_dir, port=port, workdir=tmp_path)  # empty: nothing persisted
        time.sleep(0.6)  # past redis_retry_seconds
        again = f"after outage {uuid.uuid4()}"
        assert predict(url, [again]).headers["X-Cache"] == "miss"
        assert predict(url, [again]).headers["X-Cache"] == "hit"
        assert readiness(url, "redis", "ok").json()["redis"] == "ok"
    finally:
        redis.stop()  # never leave a server behind a failed test
