"""Triton killed or stalled: hits still served, misses 503 + Retry-After, the
proxy stays ready (degraded) so that hits keep flowing; restart recovers."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkout.repository import SOURCE as MODEL_SOURCE
from checkout.repository import set_parameter
from devstack.launch import start_triton
from tests.http import predict, readiness, request
from tests.stack import Stack, start_stack
from tritonserve import SHM_OPTION

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(
    tmp_path: Path, logs_dir: Path, tiny_checkpoint: Path, redis_server: int
) -> Iterator[Stack]:
    """A private Triton (fp32) behind a proxy with a 2 s deadline; the test may kill it."""
    config = set_parameter((MODEL_SOURCE / "config.pbtxt").read_text(), "engine", "torch-fp32")
    stack = start_stack(
        tiny_checkpoint, tmp_path, logs_dir, redis_server, config, request_timeout_seconds="2"
    )
    yield stack
    stack.stop()


def test_triton_killed_then_restarted(logs_dir: Path, stack: Stack) -> None:
    proxy = stack.proxy
    cached = f"cached before the outage {uuid.uuid4()}"
    before = predict(proxy.url, [cached])
    assert before.status == 200

    killed = stack.triton
    assert killed.process is not None
    # tritonserver and its stubs at once, as an OOM kill takes a container:
    # the stubs leave their shared memory behind
    os.killpg(killed.process.pid, signal.SIGKILL)
    killed.process.wait()
    left = shm_regions(killed.command)
    assert left
    log_start = stack.proxy.log_path.stat().st_size
    hit = predict(proxy.url, [cached])
    assert (hit.status, hit.headers["X-Cache"]) == (200, "hit")
    assert hit.json() == before.json()
    started = time.monotonic()
    miss = predict(proxy.url, [f"new during the outage {uuid.uuid4()}"])
    assert time.monotonic() - started < 2.5  # within REQUEST_TIMEOUT_SECONDS
    assert miss.status == 503 and miss.headers["Retry-After"] == "1"
    assert miss.json()["error_type"] == "backend_unavailable"
    ready = readiness(proxy.url, "triton", "unavailable")
    assert ready.status == 200, "cache hits are still served: stay in the Service"
    assert (ready.json()["status"], ready.json()["triton"]) == ("degraded", "unavailable")
    for _ in range(3):
        assert predict(proxy.url, [f"new during the outage {uuid.uuid4()}"]).status == 503

    # same ports, no proxy restart
    stack.triton, _ = start_triton(stack.repository, logs_dir, stack.ports)
    assert not any(region.exists() for region in left), "removed as the next server starts"
    assert shm_regions(stack.triton.command), "the running server's regions are kept"
    after = predict(proxy.url, [f"after the outage {uuid.uuid4()}"])
    assert after.status == 200
    assert request("GET", f"{proxy.url}/health/ready").status == 200
    # the outage in the log: its start and its end, not each failed call
    with stack.proxy.log_path.open() as log:
        log.seek(log_start)
        lines = log.read().splitlines()
    assert len([line for line in lines if "triton unreachable" in line]) == 1, lines
    assert len([line for line in lines if "triton answers again" in line]) == 1, lines


def shm_regions(command: list[str]) -> list[Path]:
    """The shared-memory regions of the stubs of the tritonserver run by `command`."""
    (option,) = (arg for arg in command if SHM_OPTION in arg)
    return sorted(Path("/dev/shm").glob(f"{option.partition(SHM_OPTION)[2]}*"))


def test_a_stalled_triton_does_not_stall_readiness(stack: Stack) -> None:
    cached = f"cached before the stall {uuid.uuid4()}"
    assert predict(stack.proxy.url, [cached]).status == 200
    stack.triton.signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        started = time.monotonic()
        ready = readiness(stack.proxy.url, "triton", "unavailable")
        # a check up to a second old, then READY_TIMEOUT_SECONDS (1) of probing
        assert time.monotonic() - started < 3.5
        assert (ready.status, ready.json()["triton"]) == (200, "unavailable")
        hit = predict(stack.proxy.url, [cached])
        assert (hit.status, hit.headers["X-Cache"]) == (200, "hit")
    finally:
        stack.triton.signal(signal.SIGCONT)
