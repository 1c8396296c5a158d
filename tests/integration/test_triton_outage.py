"""Triton killed: hits still served, misses 503 + Retry-After; restart recovers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from devstack.repository import SOURCE as MODEL_SOURCE
from devstack.repository import copy_model_definition, set_parameter
from modelctl.install import install
from tests.conftest import launch_proxy, start_triton
from tests.http import predict, request

pytestmark = pytest.mark.integration


def test_triton_killed_then_restarted(
    tmp_path: Path, logs_dir: Path, tiny_checkpoint: Path, redis_server: int
) -> None:
    config = set_parameter((MODEL_SOURCE / "config.pbtxt").read_text(), "precision", "fp32")
    repository = copy_model_definition(tmp_path / "repo", config)
    install(tiny_checkpoint, repository)
    triton, ports = start_triton(repository, logs_dir)
    proxy = launch_proxy(
        logs_dir,
        triton_url=f"127.0.0.1:{ports.http}",
        redis_url=f"redis://127.0.0.1:{redis_server}/0",
        request_timeout_seconds="2",
    )
    try:
        cached = f"cached before the outage {uuid.uuid4()}"
        before = predict(proxy.url, [cached])
        assert before.status == 200

        triton.kill()
        hit = predict(proxy.url, [cached])
        assert (hit.status, hit.headers["X-Cache"]) == (200, "hit")
        assert hit.json() == before.json()
        started = time.monotonic()
        miss = predict(proxy.url, [f"new during the outage {uuid.uuid4()}"])
        assert time.monotonic() - started < 2.5  # within REQUEST_TIMEOUT_SECONDS
        assert miss.status == 503 and miss.headers["Retry-After"] == "1"
        assert miss.json()["error_type"] == "backend_unavailable"
        assert request("GET", f"{proxy.url}/health/ready").status == 503

        triton, _ = start_triton(repository, logs_dir, ports)  # same ports, no proxy restart
        after = predict(proxy.url, [f"after the outage {uuid.uuid4()}"])
        assert after.status == 200
        assert request("GET", f"{proxy.url}/health/ready").status == 200
    finally:
        proxy.stop()
        triton.stop()
