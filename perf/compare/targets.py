"""What `make bench` holds this stack to: one table of targets, each checked
on one run's figures only (pure). Where each comes from: the issue named."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perf.compare.tracing_cost import LIMIT as TRACING_LIMIT
from perf.compare.tracing_cost import ratio as tracing_ratio

Results = dict[str, Any]  # results.json: profiles, sweep, kernel, ...
Measure = Callable[[Results], float | None]  # None: this run did not measure it

KERNEL_SHARE = 0.7  # the miss path's share of the served engine's batch-32 rate (issue 30)


def _profile(results: Results, profile: str, system: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = results.get("profiles", {}).get(profile, {}).get(system)
    return found


def figure(profile: str, key: str) -> Measure:
    """Ours' `key` in `profile`."""

    def measure(results: Results) -> float | None:
        ours = _profile(results, profile, "ours")
        return None if ours is None else float(ours[key])

    return measure


def rate_vs(profile: str, other: str) -> Measure:
    """Ours' req/s divided by `other`'s in `profile`."""

    def measure(results: Results) -> float | None:
        ours, theirs = _profile(results, profile, "ours"), _profile(results, profile, other)
        if ours is None or theirs is None or not theirs["req_per_s"]:
            return None
        return float(ours["req_per_s"] / theirs["req_per_s"])

    return measure


def _latencies(summary: dict[str, Any] | None, texts: str | None) -> dict[str, Any] | None:
    """A system's p50/p99: of all its requests, or of those tagged `texts`."""
    if summary is None or texts is None:
        return summary
    found: dict[str, Any] | None = summary.get("by_texts", {}).get(texts)
    return found


def p99_vs(profile: str, other: str, texts: str | None = None) -> Measure:
    """Ours' p99 divided by `other`'s in `profile` (under 1: ours is lower);
    `texts`: of the requests tagged so only (the mixed profile's `new`: its misses)."""

    def measure(results: Results) -> float | None:
        ours = _latencies(_profile(results, profile, "ours"), texts)
        theirs = _latencies(_profile(results, profile, other), texts)
        if ours is None or theirs is None or not theirs["p99_ms"]:
            return None
        return float(ours["p99_ms"] / theirs["p99_ms"])

    return measure


def tail(profile: str, texts: str | None = None) -> Measure:
    """Ours' p99 / p50 in `profile` (`texts`: as in p99_vs)."""

    def measure(results: Results) -> float | None:
        ours = _latencies(_profile(results, profile, "ours"), texts)
        return None if ours is None or not ours["p50_ms"] else ours["p99_ms"] / ours["p50_ms"]

    return measure


def kernel_share(results: Results) -> float | None:
    """Cache-miss req/s divided by the served engine's batch-32 rate in process."""
    ours, kernel = _profile(results, "cache-miss", "ours"), results.get("kernel")
    if ours is None or not kernel:
        return None
    return float(ours["req_per_s"] / kernel["sentences_per_second"]["32"])


def one_user(results: Results) -> float | None:
    """One user's p50 (the sweep at 1 VU) divided by the engine's batch-1 time."""
    sweep, kernel = results.get("sweep", {}).get("ours"), results.get("kernel")
    if not sweep or not kernel or sweep[0]["vus"] != 1:
        return None
    return float(sweep[0]["p50_ms"] / (1000 / kernel["sentences_per_second"]["1"]))


@dataclass(frozen=True)
class Target:
    what: str
    measure: Measure
    limit: float
    at_least: bool  # True: measured >= limit; False: measured <= limit
    issue: str


@dataclass(frozen=True)
class Check:
    target: Target
    measured: float

    @property
    def met(self) -> bool:
        if self.target.at_least:
            return self.measured >= self.target.limit
        return self.measured <= self.target.limit


def _tail_profile(profile: str, texts: str | None = None) -> tuple[Target, ...]:
    """Issue 30's miss tails: of every request, or of the requests tagged `texts`."""
    which = f"{profile} ({texts} texts)" if texts else profile
    return (
        Target(f"{which}: p99 ÷ p50", tail(profile, texts), 3.0, False, "30"),
        Target(f"{which}: p99 ÷ MLServer's", p99_vs(profile, "mlserver", texts), 1.0, False, "30"),
        Target(f"{profile}: req/s ÷ MLServer's", rate_vs(profile, "mlserver"), 1.5, True, "30"),
    )


ONE_USER = "one user: p50 ÷ the served engine's batch-1 kernel time"
KERNEL = "cache-miss: req/s ÷ the served engine's batch-32 kernel rate"
MISS_VS_ORIGINAL = rate_vs("cache-miss", "original")
# fmt: off
TARGETS: tuple[Target, ...] = (
    # what, measure, limit, at_least (else at most), the issue that set it
    Target("original: req/s ÷ the original's", rate_vs("original", "original"), 10.0, True, "perf"),
    Target("original: p99 ms", figure("original", "p99_ms"), 25.0, False, "perf"),
    Target("original: failed share", figure("original", "failed_rate"), 0.0, False, "perf"),
    Target("original: req/s ÷ MLServer's", rate_vs("original", "mlserver"), 1.0, True, "30"),
    Target("cache-miss: req/s ÷ the original's", MISS_VS_ORIGINAL, 10.0, True, "perf"),
    Target("cache-miss: req/s ÷ the original's, any CPU", MISS_VS_ORIGINAL, 3.0, True, "30"),
    Target("cache-miss: p99 ms", figure("cache-miss", "p99_ms"), 100.0, False, "perf"),
    Target("cache-miss: p99 ÷ p50", tail("cache-miss"), 3.0, False, "30"),
    Target(KERNEL, kernel_share, KERNEL_SHARE, True, "30"),
    Target("cache-miss: req/s ÷ MLServer's", rate_vs("cache-miss", "mlserver"), 1.0, True, "30"),
    Target(ONE_USER, one_user, 1.3, False, "30"),
    *_tail_profile("mixed-length"),
    *_tail_profile("mixed", texts="new"),  # its misses: half its requests are cache hits
    Target("soak: req/s ÷ MLServer's", rate_vs("soak", "mlserver"), 1.0, True, "30"),
    Target("original, tracing 10%: req/s ÷ off's", tracing_ratio, TRACING_LIMIT, True, "33"),
)
# fmt: on


def check(results: Results, targets: tuple[Target, ...] = TARGETS) -> list[Check]:
    """Every target this run measured, with its figure."""
    checks = []
    for target in targets:
        measured = target.measure(results)
        if measured is not None:
            checks.append(Check(target, measured))
    return checks


def table(checks: list[Check]) -> list[str]:
    lines = ["| target | measured | limit | met | issue |", "|---|---|---|---|---|"]
    for c in checks:
        bound = (">= " if c.target.at_least else "<= ") + f"{c.target.limit:g}"
        lines.append(
            f"| {c.target.what} | {c.measured:.3g} | {bound} | "
            f"{'met' if c.met else '**NOT met**'} | {c.target.issue} |"
        )
    return lines
