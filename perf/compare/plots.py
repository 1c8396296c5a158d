"""The PNG plots of one `make bench` run (report.md links them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perf.compare.stats import Sample, over_time


def pyplot() -> Any:
    """matplotlib's pyplot drawing to files (Agg), imported when a plot is
    drawn: it is a `make bench` dependency (requirements/perf.txt), and
    perf.compare's pure parts are tested without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLORS = {"ours": "tab:blue", "original": "tab:red", "mlserver": "tab:green"}


def plot_latency(series: dict[str, dict[str, list[Sample]]], path: Path) -> Path:
    profiles = list(series)
    plt = pyplot()
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
    return save(fig, path)


def plot_sweep(sweep: dict[str, list[dict[str, float]]], path: Path) -> Path:
    plt = pyplot()
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
    return save(fig, path)


def plot_lengths(lengths: dict[str, list[dict[str, float]]], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for system, rows in lengths.items():
        tokens = [r["tokens"] for r in rows]
        ax.plot(tokens, [r["req_per_s"] for r in rows], "o-", color=COLORS[system], label=system)
    ax.set_title("cache-miss throughput against text length (10 VUs)")
    ax.set_xlabel("tokens per text")
    ax.set_ylabel("texts/s (one new text per request)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save(fig, path)


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
