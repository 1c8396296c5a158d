"""`make up` (python -m devstack.up): starts all three, serves, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from checkout.repository import copy_model_definition
from devstack.monitoring import dashboard_graphs
from devstack.process import ServerProcess, free_port, http_status, port_open, python_module
from tests.browser import artifact, rendered
from tests.http import predict, request

pytestmark = pytest.mark.integration


def start_up(
    tmp_path: Path, logs_dir: Path, name: str, *, monitoring: bool = False, tracing: bool = False
) -> tuple[ServerProcess, dict[str, int]]:
    ports = {
        name: free_port()
        for name in ("PROXY_PORT", "REDIS_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT",
                     "TRITON_METRICS_PORT", *(("PROMETHEUS_PORT",) if monitoring else ()),
                     *(("OTLP_PORT",) if tracing else ()))
    }  # fmt: skip
    env = dict(
        os.environ,
        MODEL="standin-tiny",
        MODEL_REPOSITORY=str(copy_model_definition(tmp_path / "repo")),
        MONITORING="1" if monitoring else "",
        TRACING="1" if tracing else "",
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


def test_up_with_monitoring_shows_the_dashboards_main_panels(
    tmp_path: Path, logs_dir: Path
) -> None:
    """make up MONITORING=1 prints one Prometheus link; after some traffic every
    panel it opens has data (headless Chromium; screenshot in .artifacts)."""
    up, ports = start_up(tmp_path, logs_dir, "up-monitoring", monitoring=True)
    try:
        up.wait_until(lambda: "/graph?" in up.log_tail(400), 60)
        link = next(
            line.split("|", 1)[1].strip()
            for line in up.log_tail(400).splitlines()
            if "/graph?" in line
        )
        url = f"http://127.0.0.1:{ports['PROXY_PORT']}"
        repeated = ["I love you!", "I hate you!"]
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:  # misses and hits
            assert predict(url, [*repeated, f"new {uuid.uuid4()}"]).status == 200
            time.sleep(0.1)
        time.sleep(4)  # two more scrapes
        dom = rendered(link, tmp_path / "profile", artifact("dashboard.png"), height=6000)
        graphs = dashboard_graphs(main_only=True)
        assert dom.count('class="graph rickshaw_graph"') == len(graphs), dom[-2000:]
        assert "No datapoints found" not in dom
        assert "Total time series: 0" not in dom
        rules = request("GET", f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}/api/v1/rules")
        assert len([r for g in rules.json()["data"]["groups"] for r in g["rules"]]) == 6
    finally:
        up.signal(signal.SIGTERM)
        assert up.process is not None
        up.process.wait(60)


def test_up_with_tracing_shows_a_requests_trace(tmp_path: Path, logs_dir: Path) -> None:
    """make up TRACING=1: a miss's trace, proxy to model, at the local receiver."""
    up, ports = start_up(tmp_path, logs_dir, "up-tracing", tracing=True)
    try:
        reply = predict(f"http://127.0.0.1:{ports['PROXY_PORT']}", [f"new {uuid.uuid4()}"])
        assert reply.status == 200
        trace = f"http://127.0.0.1:{ports['OTLP_PORT']}/traces/{reply.headers['X-Trace-Id']}"
        # each part (proxy, tritonserver, the model) exports in batches, every 5 s, on its own
        deadline = time.monotonic() + 45
        triton, proxy = "InferRequest [triton-inference-server]", "POST /predict [cache-proxy]"
        while not all(
            part in (shown := request("GET", trace).body.decode())
            for part in ("forward", triton, proxy)
        ):
            assert time.monotonic() < deadline, shown
            time.sleep(0.5)
        lines = shown.splitlines()
        assert lines[0].startswith(proxy)
        assert any(line.strip().startswith(triton) for line in lines)
        assert f"http://127.0.0.1:{ports['OTLP_PORT']}/traces" in up.log_tail(400)
    finally:
        up.signal(signal.SIGTERM)
        assert up.process is not None
        up.process.wait(60)
