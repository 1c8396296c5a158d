"""report.md of one `make bench` run (pure: the PNGs are plots.py's)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf import engine_check
from perf.compare import targets, tracing_cost, under_attack
from perf.compare.targets import KERNEL_SHARE

SYSTEMS = ("ours", "original", "mlserver")
PEERS = ("mlserver",)  # servers a user would pick instead (the original is the baseline)


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
        for system in (s for s in SYSTEMS if s in systems):
            r = systems[system]
            lines.append(
                f"| {profile} | {system} | {fmt(r['req_per_s'])} | {fmt(r['p50_ms'])} | "
                f"{fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['failed_rate'] * 100, 2)}% | "
                f"{fmt(r['hit_ratio'] * 100, 0)}% | {fmt(r['cpu_s_per_1k'], 2)} | "
                f"{r['rss_start_mib']:.0f} → {r['rss_end_mib']:.0f} |"
            )
        ours = systems["ours"]
        for other in (s for s in SYSTEMS[1:] if s in systems):
            theirs = systems[other]
            faster = ratio(ours["req_per_s"], theirs["req_per_s"])
            lines.append(
                f"| {profile} | **ours ÷ {other}** | **{faster}**"
                f" | | | **p99 {ratio(theirs['p99_ms'], ours['p99_ms'])} lower** | | | "
                f"{ratio(theirs['cpu_s_per_1k'], ours['cpu_s_per_1k'])} less CPU | |"
            )
    return lines


def kernel_note(results: dict[str, Any]) -> list[str]:
    """What the kernel targets divide by: the served engine, measured in process."""
    kernel = results.get("kernel")
    if not kernel:
        return []
    each = ", ".join(f"{m['32']:.0f}" for m in kernel.get("measured", []))
    isolated = kernel.get("isolated_ms")
    return [
        f"The kernel: {kernel['engine']} in process, batch 32 "
        f"{kernel['sentences_per_second']['32']:.1f}/s (the best of {each or 'one measurement'} "
        f"in this run), batch 1 {1000 / kernel['sentences_per_second']['1']:.1f} ms"
        + (f"; one text after 15 ms idle {isolated:.1f} ms." if isolated else "."),
        "",
    ]


def length_classes_section(profiles: dict[str, Any]) -> list[str]:
    """Latency per length class in the mixed-length profiles: where the long
    texts' seconds go."""
    rows = [
        (f"{profile} / {system}", summary["by_length"])
        for profile in ("mixed-length", "mixed-length-one-address")
        for system, summary in profiles.get(profile, {}).items()
        if summary.get("by_length")
    ]
    if not rows:
        return []
    classes = list(rows[0][1])
    lines = [
        "### Mixed-length misses by text length",
        "",
        "p50 / p99 ms per length class (tokens; requests in the class in brackets). Behind",
        "the ingress every user is a client of its own and the proxy serves waiting clients",
        "in turn; users behind one address are told apart only per request, and there a",
        "cheaper request goes first (a flood from that address cannot bury a short one),",
        "so long texts wait longer (cache_proxy/admission.py).",
        "",
        "| profile / system | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for label, by_length in rows:
        cells = [
            f"{c['p50_ms']:.0f} / {c['p99_ms']:.0f} ({c['n']})" if (c := by_length.get(k)) else "-"
            for k in classes
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


PARTS = {  # our stack's processes (perf/compare/systems.py System.cpu_by_part), and k6
    "triton children": "Python backend stub (tokenizing, engine)",
    "proxy": "cache_proxy",
    "triton": "tritonserver (HTTP, batcher)",
    "redis": "Redis",
    "k6": "k6 (the load generator)",
}


@dataclass(frozen=True)
class MissCeiling:
    """The cache-miss rate `cpus` cores allow if every batch ran at the
    engine's batch-32 efficiency and the stub cost nothing beyond the engine."""

    ms_by_part: dict[str, float]  # CPU ms per request, per process
    outside_ms: float  # per request, outside the stub
    engine_ms: float  # the engine's CPU per text at batch 32
    req_per_s: float  # the ceiling
    share: float  # of the kernel's batch-32 rate
    measured: float  # req/s the profile reached

    @property
    def reaches_target(self) -> bool:
        return self.share >= KERNEL_SHARE

    @property
    def drifted(self) -> bool:
        """The profile beat the ceiling: the machine ran faster than for the kernel."""
        return self.measured > self.req_per_s


def cpu_by_part(results: dict[str, Any]) -> dict[str, float]:
    """CPU ms per cache-miss request of ours, per process ({} if not measured)."""
    miss = results["profiles"].get("cache-miss", {}).get("ours", {})
    parts = miss.get("cpu_s_by_part")
    if not parts or not miss.get("predicts"):
        return {}
    order = [*(p for p in PARTS if p in parts), *(p for p in parts if p not in PARTS)]
    return {p: parts[p] / miss["predicts"] * 1000 for p in order}


def miss_ceiling(results: dict[str, Any], cpus: int) -> MissCeiling | None:
    """The miss path's ceiling, or None without the CPU split or the kernel's CPU."""
    per_request, kernel = cpu_by_part(results), results.get("kernel", {})
    engine_ms = kernel.get("cpu_ms_per_sentence_32")
    if not per_request or not engine_ms:
        return None
    outside = sum(ms for p, ms in per_request.items() if p != "triton children")
    ceiling = cpus / (outside + engine_ms) * 1000
    return MissCeiling(
        ms_by_part=per_request,
        outside_ms=outside,
        engine_ms=engine_ms,
        req_per_s=ceiling,
        share=ceiling / kernel["sentences_per_second"]["32"],
        measured=results["profiles"]["cache-miss"]["ours"]["req_per_s"],
    )


def miss_cpu_section(results: dict[str, Any], cpus: int) -> list[str]:
    """Where ours spends CPU per cache-miss request, and the miss rate that
    leaves even at the engine's batch-32 efficiency (its roof target)."""
    per_request = cpu_by_part(results)
    if not per_request:
        return []
    miss = results["profiles"]["cache-miss"]["ours"]
    lines = [
        "### Where the cache-miss path's CPU goes (ours)",
        "",
        "CPU time (user + system) per `/predict` over the cache-miss profile, per process.",
        "",
        "| process | CPU ms per request |",
        "|---|---|",
        *[f"| {PARTS.get(p, p)} | {ms:.2f} |" for p, ms in per_request.items()],
        f"| all of the above | {sum(per_request.values()):.2f} (the machine: {cpus} cores ÷ "
        f"{miss['req_per_s']:.1f} req/s = {cpus / miss['req_per_s'] * 1000:.2f}) |",
        "",
    ]
    if "triton_mean_batch" in miss:
        lines.append(
            f"Triton's mean batch over the profile: {miss['triton_mean_batch']:.1f} texts."
        )
    ceiling = miss_ceiling(results, cpus)
    if ceiling is not None:
        out_of_reach = not ceiling.reaches_target and not ceiling.drifted
        lines.append(
            f"In process, the engine takes {ceiling.engine_ms:.2f} ms of CPU per text at batch "
            f"32. With the {ceiling.outside_ms:.2f} ms per request spent outside the stub, {cpus} "
            f"cores serve at most {cpus} ÷ ({ceiling.outside_ms:.2f} + {ceiling.engine_ms:.2f}) "
            f"ms = {ceiling.req_per_s:.0f} req/s, {ceiling.share:.3f} of the kernel's batch-32 "
            "rate, even if every batch ran at batch-32 efficiency and the stub cost nothing "
            "beyond the engine"
            + (
                f": the >= {KERNEL_SHARE} target is out of reach while these processes share "
                "the cores."
                if out_of_reach
                else "."
            )
        )
        if ceiling.drifted:
            lines.append(
                f"That bound is below the {ceiling.measured:.0f} req/s measured: the machine "
                "ran the profile faster than it ran the kernel (its speed drifted), so this "
                "run's ratios to the kernel are not to be trusted."
            )
    return [*lines, ""]


def write_report(out: Path, meta: dict[str, Any], results: dict[str, Any]) -> Path:
    engine = meta.get("engine", "auto")
    setting = "engine auto" if engine == "auto" else f"engine pinned to {engine}"
    lines = [
        "# This stack vs the original design, side by side",
        "",
        f"Command: `{meta['command']}` ({meta['mode']} mode), {meta['started']} UTC, "
        f"commit `{meta['commit']}`. CPU: **{meta['cpu']}**, {meta['cpus']} cores shared by "
        "every system (run one after the other, never together), the load generators and "
        "everything else. Figures depend on the CPU: compare only rows of one report.",
        "",
        "- **ours**: cache_proxy (per-text Redis cache) → tritonserver, `distilbert_sst2` with "
        f"the committed `config.pbtxt` ({setting}), model `standin-base` (DistilBERT-base "
        "compute, random weights).",
        "- **original**: the rebuilt original design (`perf/baselines/original_app.py`): "
        "FastAPI + transformers pipeline (fp32) in one uvicorn process, whole-request Redis "
        "cache with a 60 s TTL, on the same checkpoint files.",
        "- **mlserver**: the peer a user would pick instead, MLServer 1.7.1 with its Hugging "
        "Face runtime and adaptive batching (`perf/peers/mlserver.py`), as its documentation "
        "sets up a text classifier, on the same checkpoint files; no cache; called with the v2 "
        "protocol.",
        "",
    ]
    check = results.get("engine_check")
    if check:
        lines += [
            f"`engine: auto` served **{check['standin']}** on the stand-in; "
            + engine_check.sentence(check)
            + " (The stand-in's speeds with the SST-2-trained model's numbers: "
            "`perf/engine_check.py`.)",
            "",
        ]
    if results.get("profiles"):
        lines += profiles_section(meta, results)
    if results.get("sweep"):
        lines += sweep_section(results["sweep"])
    if results.get("lengths"):
        lines += lengths_section(results["lengths"])
    if results.get("tracing"):
        lines += [
            "## What tracing costs",
            "",
            tracing_cost.WHAT,
            "",
            *tracing_cost.table(results["tracing"]),
            "",
        ]
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


def profiles_section(meta: dict[str, Any], results: dict[str, Any]) -> list[str]:
    profiles = results["profiles"]
    return [
        "Each profile starts with every cache empty. req/s counts `POST /predict` "
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
        *targets.table(targets.check(results)),
        "",
        *kernel_note(results),
        *length_classes_section(profiles),
        *miss_cpu_section(results, meta["cpus"]),
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


def lengths_section(lengths: dict[str, list[dict[str, Any]]]) -> list[str]:
    systems = [s for s in SYSTEMS if s in lengths]
    lines = [
        "## Cache-miss path: throughput against text length",
        "",
        "10 VUs, each request one never-seen text of about this many tokens (SST-2 sentences",
        "joined and cut).",
        "",
        "| tokens | " + " | ".join(f"{s} texts/s | {s} p99 ms" for s in systems) + " |",
        "|---|" + "---|---|" * len(systems),
    ]
    for i, row in enumerate(lengths["ours"]):
        cells = [f"{fmt(lengths[s][i]['req_per_s'])} | {fmt(lengths[s][i]['p99_ms'])}"
                 for s in systems]  # fmt: skip
        lines.append(f"| {row['tokens']} | " + " | ".join(cells) + " |")
    return [*lines, "", "![throughput by length](throughput-by-length.png)", ""]
