"""The markdown report of one perf/triton run."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def write_report(path: Path, results: dict[str, Any], default: str, command: str) -> Path:
    kernel, triton = results["kernel"], results["triton"]
    best_kernel = {p: max(rates.values()) for p, rates in kernel.items()}
    lines = [
        "# Triton model performance: kernel-only vs end to end",
        "",
        f"Command: `{command}`. Machine: {platform.machine()}, 2 cores shared by",
        "tritonserver, perf_analyzer and everything else. Model: `standin-base`",
        "(DistilBERT-base compute, random weights); inputs: SST-2 train sentences.",
        f"Served default precision: **{default}**.",
        "",
        "## Kernel only (in-process forward, 2 intra-op threads), sentences/s",
        "",
        "| precision | " + " | ".join(f"batch {b}" for b in next(iter(kernel.values()))) + " |",
        "|---|" + "---|" * len(next(iter(kernel.values()))),
    ]
    for precision, rates in kernel.items():
        lines.append(f"| {precision} | " + " | ".join(f"{r:.0f}" for r in rates.values()) + " |")
    lines += [
        "",
        "## Linear layers alone (one DistilBERT-base layer: q, k, v, out, FFN), ms",
        "",
        "int8 speeds up only these; attention, GELU, LayerNorm and the residual",
        "adds run in fp32 either way, so this ratio bounds the whole model's.",
        "",
        "| tokens | fp32 ms | int8 ms | int8 speed-up |",
        "|---|---|---|---|",
    ]
    linear = results["linear_ms"]
    for tokens in linear["fp32"]:
        fp32, int8 = linear["fp32"][tokens], linear["int8"][tokens]
        lines.append(f"| {tokens} | {fp32:.2f} | {int8:.2f} | {fp32 / int8:.2f}x |")
    lines += [
        "",
        "## Triton end to end (perf_analyzer, HTTP, one sentence per request)",
        "",
        "| precision | concurrency | infer/s | p50 ms | p99 ms | queue ms | compute ms | "
        "÷ best kernel |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for precision, rows in triton.items():
        for row in rows:
            ratio = row["infer_per_second"] / best_kernel[precision]
            lines.append(
                f"| {precision} | {row['concurrency']} | {row['infer_per_second']:.0f} | "
                f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['queue_ms']:.1f} | "
                f"{row['compute_ms']:.1f} | {ratio:.2f} |"
            )
    at8 = {p: next(r for r in rows if r["concurrency"] == 8) for p, rows in triton.items()}
    speedup = at8[default]["infer_per_second"] / at8["fp32"]["infer_per_second"]
    lines += [
        "",
        f"At concurrency 8: {default} end to end is **{speedup:.2f}x** fp32; "
        f"end-to-end / best kernel = "
        + ", ".join(f"{p} {at8[p]['infer_per_second'] / best_kernel[p]:.2f}" for p in at8)
        + ".",
        "",
        "## Thread layout at concurrency 8 (" + default + ")",
        "",
        "| instances x threads | infer/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for row in results["layout"]:
        lines.append(
            f"| {row['instances']} x {row['threads']} | {row['infer_per_second']:.0f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
        )
    lines += [
        "",
        "## Resident memory (tritonserver + Python stub, full-size model)",
        "",
        "| precision | RSS MiB |",
        "|---|---|",
    ]
    for precision, mib in results["memory_mib"].items():
        lines.append(f"| {precision} | {mib:.0f} |")
    path.write_text("\n".join(lines) + "\n")
    return path
