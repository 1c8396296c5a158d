"""The "under attack" step of `make bench`: the honest client of perf.attacks
alone, then beside each attack, against our stack; one row each."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from perf.attacks import ATTACKS, HONEST_PERIOD_SECONDS, Tally, run
from perf.compare.stats import percentile
from perf.compare.systems import System

GOAL_P99_MS = 2000.0  # the original project's pass mark


def peak_rss(system: System, stop: threading.Event, peak: list[float]) -> None:
    while not stop.wait(0.5):
        peak[0] = max(peak[0], system.resident_mib())


def measure(system: System, attack: str | None, seconds: float) -> dict[str, Any]:
    system.flush_cache()
    peak, stop = [system.resident_mib()], threading.Event()
    sampler = threading.Thread(target=peak_rss, args=(system, stop, peak))
    sampler.start()
    try:
        honest, hostile = run(system.url, attack, seconds)
    finally:
        stop.set()
        sampler.join()
    return summarize(attack, honest, hostile, peak[0])


def summarize(attack: str | None, honest: Tally, hostile: Tally, rss: float) -> dict[str, Any]:
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
        "peak_rss_mib": rss,
    }


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
        "attacker no 5xx) | attacker answers by status | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = (
            row["honest_success"] == 1.0
            and row["p99_ms"] < GOAL_P99_MS
            and row["attacker_5xx"] == 0
        )
        answers = ", ".join(
            f"{'none' if s == '0' else s}: {n}"
            for s, n in sorted((str(k), v) for k, v in row["attacker_statuses"].items())
        )
        lines.append(
            f"| {row['attack']} | {row['honest_requests']} | {row['honest_success']:.1%} | "
            f"{row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {'met' if met else 'NOT met'} | "
            f"{answers or '-'} | {row['peak_rss_mib']:.0f} |"
        )
    return lines


WHAT = (
    "our stack with default settings (standin-base, int8), caches flushed before each row. "
    f"The honest client sends one never-seen SST-2-like sentence every "
    f"{HONEST_PERIOD_SECONDS * 1000:.0f} ms on a new connection; each attack runs from its "
    "own threads (perf/attacks.py) from 0.5 s before the honest client starts until it "
    "stops. 'none' in the attacker column: the server closed the connection or the "
    "attacker hung up itself (cut-off uploads, slow connections). Peak RSS: every server "
    "process (tritonserver + stub, proxy, Redis), sampled every 0.5 s."
)
