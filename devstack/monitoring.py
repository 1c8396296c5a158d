"""A local Prometheus with the Kubernetes monitoring component's own queries.

The alert rules and the dashboard panels are read from
k8s/components/monitoring (the PrometheusRule and the Grafana dashboard JSON):
one source of truth for the cluster, `make up MONITORING=1`, the tests and
`make bench`. Grafana's `$__rate_interval` becomes RATE_INTERVAL.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from checkout.paths import ROOT

MONITORING = ROOT / "k8s" / "components" / "monitoring"
RULES = MONITORING / "sst2-prometheusrule.yaml"
DASHBOARD = MONITORING / "sst2-dashboard.json"
RATE_INTERVAL = "30s"  # Grafana's $__rate_interval at a 1-2 s scrape interval
SCRAPE_INTERVAL = "2s"
# The dashboard panels shown locally, by title; per panel, the legends kept.
MAIN_PANELS = {
    "Requests/s by status": None,
    "/predict latency": ("p50", "p99"),
    "Cache hit ratio (per text)": None,
    "Average batch size (inferences / executions)": None,
    "Triton queue vs compute time per request": None,
    "Shed work by reason (cost units/s)": None,
}


@dataclass(frozen=True)
class Graph:
    """One query of a dashboard panel."""

    panel: str
    legend: str
    expr: str

    @property
    def title(self) -> str:
        return self.panel if self.legend.startswith("{{") else f"{self.panel}: {self.legend}"


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rule file."""
    rule = yaml.safe_load(RULES.read_text())
    return {"groups": rule["spec"]["groups"]}


def dashboard_graphs(main_only: bool = False) -> list[Graph]:
    """Every query of the dashboard (or of MAIN_PANELS, in their order)."""
    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"]}
    chosen = MAIN_PANELS if main_only else dict.fromkeys(panels)
    graphs = []
    for title, legends in chosen.items():
        for target in panels[title]["targets"]:
            legend = target.get("legendFormat", "")
            if legends is None or legend in legends:
                expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                graphs.append(Graph(title, legend, expr))
    return graphs


def prometheus_config(proxy: str, triton_metrics: str, rules: Path) -> dict[str, Any]:
    """Scrape the proxy and tritonserver under the job names the ServiceMonitors
    give them (the Service names), with the alert rules loaded."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "sst2-proxy", "static_configs": [{"targets": [proxy]}]},
            {"job_name": "sst2-triton", "static_configs": [{"targets": [triton_metrics]}]},
        ],
    }


def prometheus_command(workdir: Path, listen: str, proxy: str, triton_metrics: str) -> list[str]:
    """Write the config and rule file into `workdir`; the command line to run."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is missing: apt-get install prometheus (make up does)")
    workdir.mkdir(parents=True, exist_ok=True)
    rules = workdir / "rules.yml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(proxy, triton_metrics, rules)))
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={listen}",
        "--log.level=warn",
    ]


def graph_url(
    prometheus: str, graphs: list[Graph], window: str = "5m", classic: bool = True
) -> str:
    """Prometheus's graph page with one graph per query. Debian's Prometheus
    ships only the classic UI (/classic/graph); upstream builds serve /graph."""
    params: dict[str, str] = {}
    for i, graph in enumerate(graphs):
        params |= {f"g{i}.expr": graph.expr, f"g{i}.tab": "0", f"g{i}.range_input": window}
    path = "/classic/graph" if classic else "/graph"
    return f"{prometheus}{path}?{urllib.parse.urlencode(params)}"
