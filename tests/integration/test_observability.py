"""The dashboard and alert rules are true: a real Prometheus scrapes a real proxy
and tritonserver, and every expression must parse and (dashboard) return data."""

from __future__ import annotations

import json
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

from devstack.process import ServerProcess, free_port, http_status
from tests.deploy.manifests import K8S
from tests.http import predict, request
from tests.stack import Triton

pytestmark = pytest.mark.integration
MONITORING = K8S / "components" / "monitoring"
RATE_INTERVAL = "30s"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval


def rule_groups() -> dict[str, Any]:
    rule = yaml.safe_load((MONITORING / "sst2-prometheusrule.yaml").read_text())
    return {"groups": rule["spec"]["groups"]}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "sst2-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return [e.replace("$__rate_interval", RATE_INTERVAL) for e in exprs]


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} missing: `make system-deps` installs Debian's prometheus"
    return path


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    run = subprocess.run(
        [binary("promtool"), "check", "rules", str(rules)], capture_output=True, text=True
    )
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
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    proxy_target = urllib.parse.urlparse(proxy_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [  # job names as the ServiceMonitors give them (Service names)
            {"job_name": "sst2-proxy", "static_configs": [{"targets": [proxy_target]}]},
            {
                "job_name": "sst2-triton",
                "static_configs": [{"targets": [f"127.0.0.1:{triton.ports.metrics}"]}],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = f"http://127.0.0.1:{port}"
    server = ServerProcess(
        f"prometheus-{port}",
        [
            binary("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        logs_dir,
    )
    server.start().wait_until(lambda: http_status(f"{prometheus}/-/ready") == 200, 60)
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
        for expr in dashboard_expressions():
            assert query(prometheus, expr)["result"], f"no data for dashboard query: {expr}"
        for group in rule_groups()["groups"]:
            for rule in group["rules"]:
                query(prometheus, rule["expr"])  # parses and evaluates
        loaded = request("GET", f"{prometheus}/api/v1/rules").json()["data"]["groups"]
        evaluated = [r for g in loaded for r in g["rules"]]
        assert len(evaluated) == 6
        assert all(r["health"] == "ok" for r in evaluated), evaluated
    finally:
        server.stop()
