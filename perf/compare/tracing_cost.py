"""What tracing costs: the original profile against ours with tracing off and
with tracing at 10% (into a local OTLP receiver), alternating, in one run."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

RATIO = 0.1  # the share of requests traced
ROUNDS = 2  # off, on, off, on: drift within the run falls on both
WHAT = (
    f"The original profile against two copies of ours on the same engine: tracing off, "
    f"and tracing on at {RATIO:.0%} (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, "
    f"`OTEL_TRACES_SAMPLER_ARG={RATIO}`; the proxy, tritonserver and the model exporting "
    f"OTLP/HTTP to a local receiver, devstack.otlp), alternating off/on {ROUNDS} times; "
    "the median of each."
)


def environment(endpoint: str) -> dict[str, str]:
    """The variables that turn tracing on, for tritonserver and the proxy."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(RATIO),
    }


def run(measure: Callable[[str, int], dict[str, Any]], spans: Callable[[], int]) -> dict[str, Any]:
    """`measure(setting, round)`: one original-profile run of `off` or `on`;
    `spans()`: how many spans the receiver holds."""
    rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for n in range(ROUNDS):
        for setting in ("off", "on"):
            rounds[setting].append(measure(setting, n))
    median = {s: statistics.median(r["req_per_s"] for r in rounds[s]) for s in rounds}
    return {
        "rounds": rounds,
        "req_per_s": median,
        "p99_ms": {s: statistics.median(r["p99_ms"] for r in rounds[s]) for s in rounds},
        "spans_received": spans(),
    }


def ratio(results: dict[str, Any]) -> float | None:
    """Tracing on's req/s divided by tracing off's (a target: perf/compare/targets.py)."""
    tracing = results.get("tracing")
    if not tracing or not tracing["req_per_s"]["off"]:
        return None
    return float(tracing["req_per_s"]["on"] / tracing["req_per_s"]["off"])


def table(tracing: dict[str, Any]) -> list[str]:
    lines = ["| tracing | req/s (each round) | median req/s | median p99 ms |", "|---|---|---|---|"]
    for setting in ("off", "on"):
        runs = ", ".join(f"{r['req_per_s']:.1f}" for r in tracing["rounds"][setting])
        lines.append(
            f"| {setting} | {runs} | {tracing['req_per_s'][setting]:.1f} | "
            f"{tracing['p99_ms'][setting]:.1f} |"
        )
    on, off = tracing["req_per_s"]["on"], tracing["req_per_s"]["off"]
    lines += [
        "",
        f"Tracing at {RATIO:.0%}: {on / off:.3f}× the req/s of tracing off "
        f"({(1 - on / off):+.1%} cost); the receiver got {tracing['spans_received']} spans.",
    ]
    return lines
