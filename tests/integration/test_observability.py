"""The dashboard and alert rules are true: a real Prometheus scrapes a real proxy
and tritonserver, and every expression must parse and (dashboard) return data."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.launch import start_prometheus
from devstack.monitoring import dashboard_graphs, rule_groups
from tests.http import predict, request
from tests.stack import Triton

pytestmark = pytest.mark.integration


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test-system-deps` installs Debian's prometheus"
    run = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 6 rules found" in run.stdout


def query(prometheus: str, expr: str) -> dict[str, Any]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    reply = request("GET", url)
    assert reply.status == 200, f"{expr}: {reply.body.decode()}"
    body: dict[str, Any] = reply.json()
    assert body["status"] == "success", expr
    return body["data"]


def test_dashboard_and_alerts_evaluate_against_real_metrics(
    tmp_path: Path, logs_dir: Path, triton: Triton, proxy_url: str
) -> None:
    proxy = urllib.parse.urlparse(proxy_url).netloc
    triton_metrics = f"127.0.0.1:{triton.ports.metrics}"
    server = start_prometheus(tmp_path / "prometheus", logs_dir, proxy, triton_metrics)
    prometheus = server.url
    try:
        repeated = [f"observed {uuid.uuid4()}" for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:  # misses (batched by Triton) and hits
                batches = [[f"new {uuid.uuid4()}", *repeated] for _ in range(8)]
                assert {r.status for r in pool.map(lambda t: predict(proxy_url, t), batches)} == {
                    200
                }
                time.sleep(0.2)
        time.sleep(3)  # a few more scrapes after the traffic
        for graph in dashboard_graphs():
            assert query(prometheus, graph.expr)["result"], f"no data for {graph.title}"
        for group in rule_groups()["groups"]:
            for rule in group["rules"]:
                query(prometheus, rule["expr"])  # parses and evaluates
        loaded = request("GET", f"{prometheus}/api/v1/rules").json()["data"]["groups"]
        evaluated = [r for g in loaded for r in g["rules"]]
        assert len(evaluated) == 6
        assert all(r["health"] == "ok" for r in evaluated), evaluated
    finally:
        server.stop()
