"""SIGTERM: readiness fails at once, in-flight requests finish, exit within the drain time."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack.process import ServerProcess
from tests.http import Reply, predict, request
from tests.stack import Triton, launch_proxy

pytestmark = pytest.mark.integration


def long_texts(n: int) -> list[str]:
    return [f"drain {uuid.uuid4()} " * 40 for _ in range(n)]


def test_sigterm_fails_readiness_then_drains_in_flight_requests(
    logs_dir: Path, triton: Triton, redis_server: int
) -> None:
    proxy = launch_proxy(
        logs_dir,
        triton_url=triton.http_url,
        redis_url=f"redis://127.0.0.1:{redis_server}/0",
        shutdown_delay_seconds="1.5",
        shutdown_timeout_seconds="20",
        admission_target_seconds="0",  # a fixed budget: all of it in flight at once,
        max_inflight_cost="10000000",  # as the test needs
        request_timeout_seconds="60",  # about draining, not speed: a busy CI machine is slow
    )
    try:
        started = threading.Barrier(9)

        def call(_: int) -> tuple[Reply, float]:
            texts = long_texts(64)
            started.wait()
            reply = predict(proxy.url, texts)
            return reply, time.monotonic()

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(call, i) for i in range(8)]
            started.wait()
            time.sleep(0.05)  # the requests are in flight
            proxy.signal(signal.SIGTERM)
            signalled = time.monotonic()
            readiness = request("GET", f"{proxy.url}/health/ready")
            # during the shutdown delay, a straggler routed here is still served
            straggler = predict(proxy.url, ["a request after SIGTERM"])
            results = [f.result() for f in futures]
        assert readiness.status == 503
        assert readiness.json() == {"status": "draining"}
        assert straggler.status == 200
        assert straggler.headers.get("Connection") == "close"
        replies = [reply for reply, _ in results]
        # most answers arrive after SIGTERM: they really were in flight
        assert sum(done > signalled for _, done in results) >= 4
        assert [r.status for r in replies] == [200] * 8
        assert all(len(r.json()["predictions"]) == 64 for r in replies)
        assert proxy.process is not None
        assert proxy.process.wait(30) == 0
        assert time.monotonic() - signalled >= 1.5  # the listener stayed open for the delay
    finally:
        proxy.stop()  # no-op once it exited; never left running by a failed assert


@contextmanager
def frozen(server: ServerProcess) -> Iterator[None]:
    """Triton (its process group: server and stub) stops answering, then resumes."""
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)


def test_exit_is_bounded_by_the_drain_time(
    logs_dir: Path, triton: Triton, redis_server: int
) -> None:
    proxy: ServerProcess = launch_proxy(
        logs_dir,
        triton_url=triton.http_url,
        redis_url=f"redis://127.0.0.1:{redis_server}/0",
        request_timeout_seconds="60",
        shutdown_delay_seconds="0",
        shutdown_timeout_seconds="1",
    )
    with frozen(triton.server), ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(predict, proxy.url, long_texts(4))
        time.sleep(0.5)  # the request is waiting for the frozen Triton
        proxy.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert proxy.process is not None
        assert proxy.process.wait(10) == 0
        exited_after = time.monotonic() - signalled
        with pytest.raises(ConnectionError):  # cut off: the connection closes unanswered
            stuck.result()
    assert exited_after < 1 + 1.5, exited_after
    assert "drain timeout: cancelling 1 request(s)" in proxy.log_tail()
