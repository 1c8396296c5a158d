"""The "under attack" step of `make bench`: the honest client of perf.attacks
alone, then beside each attack, against our stack; one row each."""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from perf.attacks import ATTACKS, HONEST_PERIOD_SECONDS, Tally, run
from perf.compare.stats import percentile
from perf.compare.systems import System
from perf.procstat import resident_mib

GOAL_P99_MS = 2000.0  # the original project's pass mark
PROXY_LIMIT_MIB = 256  # the proxy pod's memory limit (k8s/base/proxy-deployment.yaml)
SAMPLE_SECONDS = 0.25


@dataclass
class Peaks:
    """What the servers reached during one row, sampled every SAMPLE_SECONDS."""

    rss_mib: float = 0.0  # every server process
    proxy_mib: float = 0.0
    stub_mib: float = 0.0  # the Python backend stub (the model), tritonserver's child
    triton_queue: float = 0.0  # tritonserver's nv_inference_pending_request_count
    proxy_chunks: float = 0.0  # what the proxy counted in flight: proxy_inflight_chunks
    capacity: float = 0.0  # the proxy's learned capacity and budget at the end
    budget: float = 0.0


def gauge(text: str, name: str) -> float:
    """The sum of a metric's samples in Prometheus text (0 if absent)."""
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def scrape(host: str) -> str:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"http://{host}/metrics", timeout=2) as r,
    ):
        return str(r.read().decode())
    return ""


def server_pid(system: System, prefix: str) -> int | None:
    for server in system.servers:
        if server.name.startswith(prefix) and server.process is not None:
            return server.process.pid
    return None


def sample(system: System, stop: threading.Event, peaks: Peaks) -> None:
    proxy, triton = server_pid(system, "proxy"), server_pid(system, "triton")
    stubs = []
    with contextlib.suppress(psutil.Error):
        stubs = [c.pid for c in psutil.Process(triton).children()] if triton else []
    targets = system.metrics_targets or ("", "")
    while not stop.wait(SAMPLE_SECONDS):
        peaks.rss_mib = max(peaks.rss_mib, system.resident_mib())
        peaks.proxy_mib = max(peaks.proxy_mib, resident_mib(proxy) if proxy else 0.0)
        peaks.stub_mib = max(peaks.stub_mib, resident_mib(*stubs))
        ours = scrape(targets[0])
        peaks.triton_queue = max(
            peaks.triton_queue, gauge(scrape(targets[1]), "nv_inference_pending_request_count")
        )
        peaks.proxy_chunks = max(peaks.proxy_chunks, gauge(ours, "proxy_inflight_chunks"))
        peaks.capacity = gauge(ours, "proxy_model_capacity_cost_per_second")
        peaks.budget = gauge(ours, "proxy_inflight_budget_cost")


def measure(system: System, attack: str | None, seconds: float) -> dict[str, Any]:
    system.flush_cache()
    peaks, stop = Peaks(rss_mib=system.resident_mib()), threading.Event()
    sampler = threading.Thread(target=sample, args=(system, stop, peaks))
    sampler.start()
    try:
        honest, hostile = run(system.url, attack, seconds)
    finally:
        stop.set()
        sampler.join()
    return summarize(attack, honest, hostile, peaks)


def summarize(attack: str | None, honest: Tally, hostile: Tally, peaks: Peaks) -> dict[str, Any]:
    pairs = zip(honest.latencies, honest.statuses, strict=True)
    ok = [latency * 1000 for latency, status in pairs if status == 200]
    statuses = Counter(honest.statuses)
    return {
        "attack": attack or "none",
        "honest_requests": len(honest.statuses),
        "honest_success": statuses[200] / max(1, len(honest.statuses)),
        "honest_statuses": dict(statuses),
        "p50_ms": percentile(ok, 50),
        "p99_ms": percentile(ok, 99),
        "attacker_requests": len(hostile.statuses),
        "attacker_statuses": dict(Counter(hostile.statuses)),
        "attacker_5xx": sum(1 for s in hostile.statuses if s >= 500),
        "peak_rss_mib": peaks.rss_mib,
        "peaks": asdict(peaks),
    }


def met(row: dict[str, Any]) -> bool:
    """Every honest request 200 with p99 under 2 s, no 5xx for the attacker,
    Triton's queue no deeper than the proxy counted, the proxy under its pod limit."""
    peaks = row.get("peaks", {})
    return bool(
        row["honest_success"] == 1.0
        and row["p99_ms"] < GOAL_P99_MS
        and row["attacker_5xx"] == 0
        and peaks.get("triton_queue", 0) <= peaks.get("proxy_chunks", 0)
        and peaks.get("proxy_mib", 0) < PROXY_LIMIT_MIB
    )


def run_all(system: System, seconds: float, log: Any) -> list[dict[str, Any]]:
    rows = []
    for attack in (None, *ATTACKS):
        rows.append(measure(system, attack, seconds))
        row = rows[-1]
        log(
            f"  {row['attack']:17s} honest {row['honest_success']:.1%} of "
            f"{row['honest_requests']}, p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms; "
            f"attacker {row['attacker_statuses']}"
        )
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| attack | honest requests | honest 200 | p50 ms | p99 ms | goal (all 200, p99 < 2 s, "
        "attacker no 5xx, Triton queue <= proxy count, proxy < 256 MiB) | attacker answers "
        "by status | Triton queue peak / proxy chunks peak | proxy / stub / all peak MiB "
        "| capacity units/s, budget |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        peaks = row.get("peaks", {})
        answers = ", ".join(
            f"{'none' if s == '0' else s}: {n}"
            for s, n in sorted((str(k), v) for k, v in row["attacker_statuses"].items())
        )
        lines.append(
            f"| {row['attack']} | {row['honest_requests']} | {row['honest_success']:.1%} | "
            f"{row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {'met' if met(row) else 'NOT met'} | "
            f"{answers or '-'} | {peaks.get('triton_queue', 0):.0f} / "
            f"{peaks.get('proxy_chunks', 0):.0f} | {peaks.get('proxy_mib', 0):.0f} / "
            f"{peaks.get('stub_mib', 0):.0f} / {row['peak_rss_mib']:.0f} | "
            f"{peaks.get('capacity', 0):.0f}, {peaks.get('budget', 0):.0f} |"
        )
    return lines


WHAT = (
    "our stack with default settings (standin-base, int8), caches flushed before each row. "
    f"The honest client sends one never-seen SST-2-like sentence every "
    f"{HONEST_PERIOD_SECONDS * 1000:.0f} ms on a new connection; each attack runs from its "
    "own threads (perf/attacks.py) from 0.5 s before the honest client starts until it "
    "stops. 'none' in the attacker column: the server closed the connection or the "
    "attacker hung up itself (cut-off uploads, slow connections, the hang-up flood). "
    "Sampled every 0.25 s: tritonserver's pending requests (nv_inference_pending_request_count) "
    "beside the chunks the proxy counted in flight (proxy_inflight_chunks); resident memory "
    "of the proxy, of the model's stub, and of every server process (tritonserver + stub, "
    "proxy, Redis); the proxy's learned capacity and budget at the row's end."
)
