"""report.md and the PNG plots of one `make bench` run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from perf.compare import under_attack
from perf.compare.stats import Sample, over_time

SYSTEMS = ("ours", "original")
COLORS = {"ours": "tab:blue", "original": "tab:red"}
TARGETS = {  # from the perf issue: what this stack should reach, same machine, same run
    "original": "p99 < 25 ms, zero failed requests, >= 10x the original's req/s",
    "cache-miss": "p99 < 100 ms, >= 10x the original's req/s",
}


def plot_latency(series: dict[str, dict[str, list[Sample]]], path: Path) -> Path:
    profiles = list(series)
    fig, axes = plt.subplots(len(profiles), 1, figsize=(9, 3.2 * len(profiles)), squeeze=False)
    for ax, profile in zip(axes[:, 0], profiles, strict=True):
        for system, samples in series[profile].items():
            starts, lines = over_time(samples, 5.0, (50, 99))
            ax.plot(starts, lines[50], color=COLORS[system], label=f"{system} p50")
            ax.plot(starts, lines[99], color=COLORS[system], linestyle="--", label=f"{system} p99")
        ax.set_yscale("log")
        ax.set_title(f"{profile}: /predict latency (5 s buckets)")
        ax.set_xlabel("seconds into the profile")
        ax.set_ylabel("ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(sweep: dict[str, list[dict[str, float]]], path: Path) -> Path:
    fig, (rate, tail) = plt.subplots(1, 2, figsize=(10, 3.8))
    for system, rows in sweep.items():
        vus = [r["vus"] for r in rows]
        rate.plot(vus, [r["req_per_s"] for r in rows], "o-", color=COLORS[system], label=system)
        tail.plot(vus, [r["p99_ms"] for r in rows], "o-", color=COLORS[system], label=system)
    rate.set_title("cache-miss path: throughput")
    rate.set_ylabel("requests/s (one new sentence each)")
    tail.set_title("cache-miss path: p99 latency")
    tail.set_ylabel("ms")
    tail.set_yscale("log")
    for ax in (rate, tail):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent users (k6 VUs)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if not (a and b) or math.isnan(a) or math.isnan(b) else f"{a / b:.1f}x"


def profile_table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| profile | system | req/s | p50 ms | p95 ms | p99 ms | failed | cache hits "
        "| CPU s / 1k req | RSS MiB (start → end) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for profile, systems in results.items():
        for system in SYSTEMS:
            r = systems[system]
            lines.append(
                f"| {profile} | {system} | {fmt(r['req_per_s'])} | {fmt(r['p50_ms'])} | "
                f"{fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['failed_rate'] * 100, 2)}% | "
                f"{fmt(r['hit_ratio'] * 100, 0)}% | {fmt(r['cpu_s_per_1k'], 2)} | "
                f"{r['rss_start_mib']:.0f} → {r['rss_end_mib']:.0f} |"
            )
        ours, theirs = systems["ours"], systems["original"]
        faster = ratio(ours["req_per_s"], theirs["req_per_s"])
        lines.append(
            f"| {profile} | **ours ÷ original** | **{faster}**"
            f" | | | **p99 {ratio(theirs['p99_ms'], ours['p99_ms'])} lower** | | | "
            f"{ratio(theirs['cpu_s_per_1k'], ours['cpu_s_per_1k'])} less CPU | |"
        )
    return lines


def targets(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for profile, target in TARGETS.items():
        if profile not in results:
            continue
        ours, theirs = results[profile]["ours"], results[profile]["original"]
        speedup = ours["req_per_s"] / theirs["req_per_s"]
        checks = [f"{speedup:.1f}x req/s ({'met' if speedup >= 10 else 'NOT met'})"]
        limit = 25 if profile == "original" else 100
        checks.append(
            f"p99 {ours['p99_ms']:.1f} ms ({'met' if ours['p99_ms'] < limit else 'NOT met'})"
        )
        if profile == "original":
            zero = ours["failed_rate"] == 0
            checks.append(f"failed {ours['failed_rate']:.4f} ({'met' if zero else 'NOT met'})")
        lines.append(f"- **{profile}** (target: {target}): " + "; ".join(checks) + ".")
    return lines


def write_report(out: Path, meta: dict[str, Any], results: dict[str, Any]) -> Path:
    lines = [
        "# This stack vs the original design, side by side",
        "",
        f"Command: `{meta['command']}` ({meta['mode']} mode), {meta['started']} UTC, "
        f"commit `{meta['commit']}`. CPU: **{meta['cpu']}**, {meta['cpus']} cores shared by "
        "both systems (run one after the other, never together), the load generators and "
        "everything else. Figures depend on the CPU: compare only rows of one report.",
        "",
        "- **ours**: cache_proxy (per-text Redis cache) → tritonserver, `distilbert_sst2` with "
        "the committed `config.pbtxt` (int8), model `standin-base` (DistilBERT-base compute, "
        "random weights).",
        "- **original**: the rebuilt original design (`perf/baselines/original_app.py`): "
        "FastAPI + transformers pipeline (fp32) in one uvicorn process, whole-request Redis "
        "cache with a 60 s TTL, on the same checkpoint files.",
        "",
    ]
    if results.get("profiles"):
        lines += profiles_section(meta, results["profiles"])
    if results.get("sweep"):
        lines += sweep_section(results["sweep"])
    if results.get("under_attack"):
        lines += [
            "## Under attack: an honest client beside each attack",
            "",
            meta["under_attack"],
            "",
            *under_attack.table(results["under_attack"]),
            "",
        ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def profiles_section(meta: dict[str, Any], profiles: dict[str, Any]) -> list[str]:
    return [
        "Each profile starts with both caches empty. req/s counts `POST /predict` "
        "(the original profile also sends one `GET /health` per iteration); latencies are "
        "`/predict` only; cache hits are requests the cache answered whole; CPU is user + "
        "system time of every server process (Redis included) during the profile.",
        "",
        "## Profiles",
        "",
        *[f"- `{name}`: {what}" for name, what in meta["profiles"].items()],
        "",
        "## Results",
        "",
        *profile_table(profiles),
        "",
        "### Against the targets",
        "",
        *targets(profiles),
        "",
        "![latency over time](latency-over-time.png)",
        "",
        "Our stack seen through the Grafana dashboard's main panels (their own queries, "
        "from a Prometheus scraping the proxy and tritonserver every 2 s during the run; "
        "rates over 30 s): requests/s by status, p50/p99, per-text cache hit ratio, "
        "Triton's batch size, queue vs compute time per request, shed work by reason.",
        "",
        "![dashboard panels](dashboard-panels.png)",
        "",
    ]


def sweep_section(sweep: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "## Cache-miss path: throughput against concurrency",
        "",
        "| VUs | " + " | ".join(f"{s} req/s | {s} p99 ms" for s in SYSTEMS) + " |",
        "|---|" + "---|---|" * len(SYSTEMS),
    ]
    for i, row in enumerate(sweep["ours"]):
        cells = [f"{fmt(sweep[s][i]['req_per_s'])} | {fmt(sweep[s][i]['p99_ms'])}" for s in SYSTEMS]
        lines.append(f"| {row['vus']} | " + " | ".join(cells) + " |")
    return [*lines, "", "![cache-miss throughput](miss-throughput.png)", ""]
