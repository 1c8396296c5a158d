"""The Grafana dashboard's main panels over each profile, from a Prometheus
that scraped our stack during the run (the dashboard's own queries, read by
devstack.monitoring), drawn next to the k6 figures."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

from devstack.monitoring import dashboard_graphs
from perf.compare.plots import pyplot

# {panel title: {series label: [(seconds into the profile, value), ...]}}
Panels = dict[str, dict[str, list[tuple[float, float]]]]


def query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, object]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2s"})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.loads(r.read())
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def record(prometheus: str, start: float, end: float) -> Panels:
    """Every main panel's series between `start` and `end` (epoch seconds)."""
    panels: Panels = defaultdict(dict)
    for graph in dashboard_graphs(main_only=True):
        for series in query_range(prometheus, graph.expr, start, end):
            metric = series["metric"]
            assert isinstance(metric, dict)
            label = graph.legend
            for key, value in metric.items():
                label = label.replace(f"{{{{{key}}}}}", str(value))
            values = series["values"]
            assert isinstance(values, list)
            points = [(float(t) - start, float(v)) for t, v in values if v not in ("NaN", "+Inf")]
            panels[graph.panel][label] = points
    return dict(panels)


def plot_panels(runs: dict[str, Panels], path: Path) -> Path:
    """One row per profile, one column per panel."""
    titles = list(dict.fromkeys(g.panel for g in dashboard_graphs(main_only=True)))
    plt = pyplot()
    fig, axes = plt.subplots(
        len(runs), len(titles), figsize=(3.4 * len(titles), 2.6 * len(runs)), squeeze=False
    )
    for row, (profile, panels) in zip(axes, runs.items(), strict=True):
        for ax, title in zip(row, titles, strict=True):
            for label, points in panels.get(title, {}).items():
                if points:
                    ax.plot(*zip(*points, strict=True), label=label, linewidth=1.2)
            ax.set_title(f"{profile}: {title}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            if panels.get(title):
                ax.legend(fontsize=6)
        row[0].set_xlabel("seconds into the profile", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
