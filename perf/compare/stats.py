"""From k6's CSV output to the report's numbers (pure functions)."""

from __future__ import annotations

import csv
import gzip
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the epoch
    ms: float  # http_req_duration of one POST /predict


@dataclass(frozen=True)
class Run:
    predicts: list[Sample]
    failed: int  # failed requests, /health included
    requests: int  # all requests, /health included
    hits: int  # /predict answers the cache served whole
    cache_checked: int
    by_length: dict[str, list[float]]  # /predict latencies per `tokens` tag (mixed-length)
    by_texts: dict[str, list[float]] = field(default_factory=dict)  # per `texts` tag (mixed)


def read_k6_csv(path: Path) -> Run:
    """k6 `--out csv=...gz` with K6_CSV_TIME_FORMAT=unix_milli."""
    predicts: list[Sample] = []
    by_length: dict[str, list[float]] = {}
    by_texts: dict[str, list[float]] = {}
    failed = requests = hits = checked = 0
    with gzip.open(path, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            metric = row["metric_name"]
            if metric == "http_req_duration" and row["name"] == "predict":
                predicts.append(Sample(int(row["timestamp"]) / 1000, float(row["metric_value"])))
                tags = extra_tags(row.get("extra_tags") or "")
                for tag, groups in (("tokens", by_length), ("texts", by_texts)):
                    if tag in tags:
                        groups.setdefault(tags[tag], []).append(float(row["metric_value"]))
            elif metric == "http_req_failed":
                requests += 1
                failed += float(row["metric_value"]) > 0
            elif metric == "cache_hit":
                checked += 1
                hits += float(row["metric_value"]) > 0
    predicts.sort(key=lambda s: s.at)
    return Run(predicts, failed, requests, hits, checked, by_length, by_texts)


def extra_tags(field: str) -> dict[str, str]:
    """k6 CSV's extra_tags column (`key=value&key=value`)."""
    return dict(pair.split("=", 1) for pair in field.split("&") if "=" in pair)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(run: Run, seconds: float, cpu_seconds: float) -> dict[str, Any]:
    latencies = [s.ms for s in run.predicts]
    count = len(latencies)
    return {
        "predicts": count,
        "req_per_s": count / seconds if seconds > 0 else math.nan,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "failed_rate": run.failed / run.requests if run.requests else math.nan,
        "hit_ratio": run.hits / run.cache_checked if run.cache_checked else math.nan,
        "cpu_s_per_1k": cpu_seconds / count * 1000 if count else math.nan,
        "by_length": {
            length: tail_of(ms)
            for length, ms in sorted(run.by_length.items(), key=lambda kv: first_int(kv[0]))
        },
        "by_texts": {kind: tail_of(ms) for kind, ms in sorted(run.by_texts.items())},
    }


def tail_of(latencies: Sequence[float]) -> dict[str, float]:
    return {"n": len(latencies), "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99)}  # fmt: skip


def first_int(label: str) -> int:
    """The leading number of a label such as `16-63` (for ordering)."""
    digits = "".join(itertools.takewhile(str.isdigit, label))
    return int(digits) if digits else 0


def triton_counts(metrics: str) -> tuple[float, float]:
    """(requests inferred, model executions) so far, from tritonserver's
    /metrics text; over an interval, their ratio is the mean batch size."""
    totals = {"nv_inference_count": 0.0, "nv_inference_exec_count": 0.0}
    for family in text_string_to_metric_families(metrics):
        if family.name in totals:
            totals[family.name] += sum(sample.value for sample in family.samples)
    return totals["nv_inference_count"], totals["nv_inference_exec_count"]


def over_time(
    samples: Iterable[Sample], bucket_seconds: float, quantiles: Sequence[float]
) -> tuple[list[float], dict[float, list[float]]]:
    """Latency percentiles per time bucket: (bucket starts since the first
    sample, {q: [value per bucket]})."""
    samples = list(samples)
    if not samples:
        return [], {q: [] for q in quantiles}
    start = samples[0].at
    buckets: dict[int, list[float]] = {}
    for sample in samples:
        buckets.setdefault(int((sample.at - start) // bucket_seconds), []).append(sample.ms)
    keys = sorted(buckets)
    return [k * bucket_seconds for k in keys], {
        q: [percentile(buckets[k], q) for k in keys] for q in quantiles
    }
