"""The "under attack" step of `make bench`: the honest client of perf.attacks
alone, then beside each attack, against our stack; one row each."""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from devstack.launch import start_proxy
from perf.attacks import ATTACKS, HONEST_PERIOD_SECONDS, Tally, Target, long_text, post, run
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


def sample(system: System, stop: threading.Event, peaks: Peaks, proxy_url: str) -> None:
    proxy, triton = (
        server_pid(system, f"proxy-{proxy_url.rsplit(':', 1)[-1]}"),
        server_pid(system, "triton"),
    )
    stubs = []
    with contextlib.suppress(psutil.Error):
        stubs = [c.pid for c in psutil.Process(triton).children()] if triton else []
    targets = (proxy_url.removeprefix("http://"), (system.metrics_targets or ("", ""))[1])
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


def measure(
    system: System, attack: str | None, seconds: float, url: str = "", **how: Any
) -> dict[str, Any]:
    """One row: the honest client beside `attack` on `url` (default: ours'
    proxy); `how`: perf.attacks.run's keyword arguments."""
    url = url or system.url
    how = {"honest_headers": HONEST, "attack_headers": ATTACKER, **how}
    system.flush_cache()
    peaks, stop = Peaks(rss_mib=system.resident_mib()), threading.Event()
    sampler = threading.Thread(target=sample, args=(system, stop, peaks, url))
    sampler.start()
    try:
        honest, hostile = run(url, attack, seconds, **how)
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


RATE_LIMIT = {"rate_limit_per_second": "200", "rate_limit_burst": "2000"}
# Two clients, as the ingress tells them apart (ours' proxy trusts the loopback hop)
HONEST = {"X-Forwarded-For": "198.51.100.7"}
ATTACKER = {"X-Forwarded-For": "203.0.113.66"}
KEYS = {"honest": "honest-key", "attacker": "attacker-key"}
RATE_LIMITED_THREADS = 16  # concurrent cache-busting requests, 256 new texts each


def rate_limited_row(system: System, seconds: float, logs: Path) -> dict[str, Any]:
    """A proxy beside ours' (same Triton and Redis) with a rate limit and API
    keys, so the honest client and the attacker are two clients: the attacker
    busts the cache from RATE_LIMITED_THREADS concurrent requests."""
    proxy = start_proxy(
        logs, **system.proxy_settings, **RATE_LIMIT, api_keys=",".join(KEYS.values())
    )
    system.servers.append(proxy)  # counted in the row's memory, stopped with ours
    bearer = {name: {"Authorization": f"Bearer {key}"} for name, key in KEYS.items()}
    row = measure(
        system,
        "cache-busting",
        seconds,
        proxy.url,
        threads=RATE_LIMITED_THREADS,
        honest_headers={**HONEST, **bearer["honest"]},
        attack_headers={**ATTACKER, **bearer["attacker"]},
    )
    row["attack"] = (
        f"cache-busting x{RATE_LIMITED_THREADS} concurrent, "
        f"RATE_LIMIT_PER_SECOND={RATE_LIMIT['rate_limit_per_second']}"
    )
    return row


def long_text_ms(url: str, times: int = 3) -> float:
    """The median time of a never-seen 512-token text alone: the floor of an
    honest request's wait on this CPU, which one such text ahead of it sets."""
    target, took = Target.of(url), []
    for _ in range(times):
        started = time.monotonic()
        assert post(target, json.dumps({"text": [long_text()]}).encode()) == 200
        took.append((time.monotonic() - started) * 1000)
    return statistics.median(took)


def run_all(system: System, seconds: float, log: Any, logs: Path) -> dict[str, Any]:
    floor = long_text_ms(system.url)
    log(f"  one never-seen 512-token text alone: {floor:.0f} ms (the floor of a wait)")
    rows = []
    for attack in (*((None, *ATTACKS)), "rate-limited"):
        if attack == "rate-limited":
            rows.append(rate_limited_row(system, seconds, logs))
        else:
            rows.append(measure(system, attack, seconds))
        row = rows[-1]
        log(
            f"  {row['attack']:17s} honest {row['honest_success']:.1%} of "
            f"{row['honest_requests']}, p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms; "
            f"attacker {row['attacker_statuses']}"
        )
    return {"rows": rows, "long_text_ms": floor}


def table(results: dict[str, Any]) -> list[str]:
    rows = results["rows"]
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
    return [
        f"One never-seen 512-token text alone took {results['long_text_ms']:.0f} ms (median of "
        "3): an honest request may wait for one such text already running, so this is the "
        "floor its p99 stands on.",
        "",
        *lines,
    ]


WHAT = (
    "our stack with default settings (standin-base, engine auto) but TRUSTED_PROXIES=127.0.0.1, "
    "as behind the ingress: the honest client and the attacker are two clients, told apart "
    f"by X-Forwarded-For ({HONEST['X-Forwarded-For']} and {ATTACKER['X-Forwarded-For']}). "
    "Caches flushed before each row; the last row runs a second proxy on the same Triton "
    "and Redis with "
    f"RATE_LIMIT_PER_SECOND={RATE_LIMIT['rate_limit_per_second']} "
    f"(burst {RATE_LIMIT['rate_limit_burst']}) and API keys, the attacker busting the cache "
    f"from {RATE_LIMITED_THREADS} concurrent requests with its own key. "
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
