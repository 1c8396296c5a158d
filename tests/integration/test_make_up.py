"""`make up` (python -m devstack.up): starts all three, serves, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from devstack.process import ServerProcess, free_port, http_status, port_open, python_module
from devstack.repository import copy_model_definition
from tests.http import predict

pytestmark = pytest.mark.integration


def start_up(tmp_path: Path, logs_dir: Path, name: str) -> tuple[ServerProcess, dict[str, int]]:
    ports = {
        name: free_port()
        for name in ("PROXY_PORT", "REDIS_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT",
                     "TRITON_METRICS_PORT")
    }  # fmt: skip
    env = dict(
        os.environ,
        MODEL="standin-tiny",
        MODEL_REPOSITORY=str(copy_model_definition(tmp_path / "repo")),
        **{k: str(v) for k, v in ports.items()},
    )
    up = ServerProcess(name, python_module("devstack.up"), logs_dir, env).start()
    url = f"http://127.0.0.1:{ports['PROXY_PORT']}"
    up.wait_until(lambda: http_status(f"{url}/health/ready") == 200, 180)
    return up, ports


def test_up_serves_and_stops_cleanly_on_sigterm(tmp_path: Path, logs_dir: Path) -> None:
    up, ports = start_up(tmp_path, logs_dir, "up-sigterm")
    url = f"http://127.0.0.1:{ports['PROXY_PORT']}"
    reply = predict(url, ["I love you!", "I hate you!"])
    assert reply.status == 200 and len(reply.json()["predictions"]) == 2
    up.wait_until(lambda: "curl -s" in up.log_tail(200), 10)
    log = up.log_tail(400)
    for prefix in ("redis  |", "triton |", "proxy  |", "ready  |"):
        assert prefix in log
    assert "STAND-IN MODEL" in log

    up.signal(signal.SIGTERM)
    assert up.process is not None
    assert up.process.wait(60) == 0
    assert not any(port_open(p) for p in ports.values())


def test_up_stops_everything_when_one_child_dies(tmp_path: Path, logs_dir: Path) -> None:
    up, ports = start_up(tmp_path, logs_dir, "up-child-dies")
    subprocess.run(
        ["pkill", "-KILL", "-f", f"redis-server 127.0.0.1:{ports['REDIS_PORT']}"], check=True
    )
    assert up.process is not None
    assert up.process.wait(60) != 0
    assert not any(port_open(p) for p in ports.values())
