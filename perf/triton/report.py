"""The markdown report of one perf/triton run: engines side by side, then Triton."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perf import engine_check


def _kernel_table(kernel: dict[str, dict[str, float]]) -> list[str]:
    sizes = list(next(iter(kernel.values())))
    lines = [
        "| engine | " + " | ".join(f"batch {b}" for b in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for engine, rates in kernel.items():
        lines.append(f"| {engine} | " + " | ".join(f"{r:.1f}" for r in rates.values()) + " |")
    return lines


def _engine_table(results: dict[str, Any]) -> list[str]:
    accuracy = results.get("accuracy", {})
    trained = {t["engine"]: t for t in results.get("trained_trials", [])}
    lines = [
        "| engine | held-out accuracy | vs torch-fp32 | batch drift (stand-in) | "
        "batch drift (trained) | max score distance from fp32 (trained) | qualifies for auto |",
        "|---|---|---|---|---|---|---|",
    ]
    fp32 = accuracy.get("torch-fp32")
    for trial in results["trials"]:
        name = trial["engine"]
        acc = accuracy.get(name)
        t = trained.get(name, trial)
        delta = f"{(acc - fp32) * 100:+.2f} pt" if acc is not None and fp32 is not None else "-"
        lines.append(
            f"| {name} | {acc:.4f} | {delta} | {trial['batch_drift']:.1e} | "
            f"{t['batch_drift']:.1e} | {t['max_difference']:.1e} | "
            f"{'yes' if t['qualifies'] else 'no'} |"
            if acc is not None
            else f"| {name} | - | - | {trial['batch_drift']:.1e} | - | - | "
            f"{'yes' if trial['qualifies'] else 'no'} |"
        )
    return lines


def write_report(path: Path, results: dict[str, Any], command: str) -> Path:
    kernel, triton = results["kernel"], results["triton"]
    served = triton["auto"]["engine"]
    lines = [
        "# Engines on this CPU, and Triton end to end",
        "",
        f"Command: `{command}`. CPU: **{results['cpu']}** (lscpu in raw/lscpu.txt);",
        "2 cores shared by tritonserver, perf_analyzer and everything else. Speed model:",
        "`standin-base` (DistilBERT-base compute, random weights); accuracy model: the",
        "SST-2-trained offline model on its held-out split. Figures compare only within this run.",
        "",
        f"`engine: auto` served **{served}** here.",
        "",
        f"## Kernel only (in-process, 2 threads, {results['texts']} SST-2 phrases of 8+ words), "
        "sentences/s",
        "",
        "The median of 3 passes, each over a third of the phrases: batches the engine has not",
        "seen before, as in serving.",
        "",
        "Every engine runs the packed forward (texts end to end, no padding); `padded",
        "torch-fp32` is transformers' own padded forward, what packing is measured against.",
        "",
        *_kernel_table(kernel),
        "",
        *padding_section(results["padding"]),
        "## Accuracy and batch invariance per engine",
        "",
        "Batch drift: the largest change of a probe text's scores between scored alone and",
        "among the other probe texts (what `engine: auto` measures at load). It qualifies an",
        "engine whose drift is at most 4x torch fp32's own on the same checkpoint (never over",
        "1e-4), whose fp32 scores are torch's to 16x that noise, and whose int8 labels agree",
        "with fp32 (not judged on the stand-in's random weights): `1/selection.py`.",
        "",
        *_engine_table(results),
        "",
    ]
    if results.get("trained_trials"):
        check = engine_check.verdict(results["trials"], results["trained_trials"])
        lines += [
            f"On the stand-in `engine: auto` chose **{check['standin']}** in these trials; "
            + engine_check.sentence(check),
            "",
        ]
    lines += [
        "## Triton end to end (perf_analyzer, HTTP, one sentence per request)",
        "",
        "perf_analyzer sends SST-2 phrases of 8+ words (other ones than the kernel table's), "
        "so `÷ kernel batch 32` compares like with like.",
        "",
        "| engine setting | engine | concurrency | infer/s | p50 ms | p99 ms | p99 / p50 | "
        "queue ms | compute ms | ÷ kernel batch 32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for setting, served_run in triton.items():
        engine = served_run["engine"]
        for row in served_run["rows"]:
            ratio = row["infer_per_second"] / kernel[engine]["32"]
            lines.append(
                f"| {setting} | {engine} | {row['concurrency']} | {row['infer_per_second']:.1f} | "
                f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                f"{row['p99_ms'] / row['p50_ms']:.2f} | {row['queue_ms']:.1f} | "
                f"{row['compute_ms']:.1f} | {ratio:.2f} |"
            )
    lines += [
        "",
        f"## Thread layout at concurrency 8 (engine auto: {served})",
        "",
        "| instances x threads | engine | infer/s | p50 ms | p99 ms | p99 / p50 |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["layout"]:
        lines.append(
            f"| {row['instances']} x {row['threads']} | {row['engine']} | "
            f"{row['infer_per_second']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['p99_ms'] / row['p50_ms']:.2f} |"
        )
    lines += batcher_section(results["batcher"], served)
    lines += [
        "",
        "## Resident memory (tritonserver + Python stub, full-size model)",
        "",
        "| engine | RSS MiB |",
        "|---|---|",
        *(f"| {engine} | {mib:.0f} |" for engine, mib in results["memory_mib"].items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def batcher_section(rows: list[dict[str, Any]], served: str) -> list[str]:
    """Dynamic batcher settings side by side."""
    lines = [
        "",
        f"## Dynamic batcher settings (engine auto: {served})",
        "",
        "With no delay the batcher runs what is queued as soon as the instance is",
        "free, and a queued batch grows while the instance computes; every batch",
        "size preferred makes it dispatch at once even with a delay, but with no",
        "delay closes a batch at its first size; a delay alone makes a lone request",
        "wait it out. (No queue policy: why, the model README, \"The dynamic batcher's",
        '500 ms wait".)',
        "",
        "| batcher | concurrency | infer/s | p50 ms | p99 ms | p99 / p50 | queue ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['batcher']} | {row['concurrency']} | {row['infer_per_second']:.1f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['p99_ms'] / row['p50_ms']:.2f} | {row['queue_ms']:.1f} |"
        )
    return lines


def padding_section(padding: dict[str, Any]) -> list[str]:
    """OpenVINO's token padding (none without an OpenVINO engine)."""
    if not padding["ratios"]:
        return []
    served = padding["served"]
    first = next(iter(padding["ratios"].values()))
    sizes = list(next(iter(first.values())))
    texts = padding["texts"]
    lines = [
        "OpenVINO prepares each new input shape anew, so its inputs are padded to a multiple",
        f"of **{served} tokens** and {texts} texts. Time per call padded to another multiple",
        f"of tokens, divided by the time at {served} (the same batch under each in turn, every",
        "shape seen first; median; under 1 means that multiple would be faster):",
        "",
        "| engine | multiple | " + " | ".join(f"batch {b}" for b in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for engine, by_multiple in padding["ratios"].items():
        for multiple, ratios in by_multiple.items():
            cells = " | ".join(f"{ratios[b]:.3f}" for b in sizes)
            lines.append(f"| {engine} | {multiple} | {cells} |")
    return [*lines, ""]
