"""perf/compare's arithmetic on k6 CSV output (pure functions)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from perf.compare.k6run import as_unseen
from perf.compare.report import write_report
from perf.compare.stats import Run, Sample, over_time, percentile, read_k6_csv, summarize
from perf.machine import cpu_summary

HEADER = "metric_name,timestamp,metric_value,name\n"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert math.isnan(percentile([], 50))


def test_read_k6_csv_counts_predicts_failures_and_hits(tmp_path: Path) -> None:
    path = tmp_path / "run.csv.gz"
    rows = [
        "http_req_duration,1000,5.0,predict",
        "http_req_duration,2000,7.0,predict",
        "http_req_duration,1500,1.0,health",
        "http_req_failed,1000,0,predict",
        "http_req_failed,1500,1,health",
        "http_req_failed,2000,0,predict",
        "cache_hit,1000,1,predict",
        "cache_hit,2000,0,predict",
    ]
    with gzip.open(path, "wt") as handle:
        handle.write(HEADER + "\n".join(rows) + "\n")
    run = read_k6_csv(path)
    assert [s.ms for s in run.predicts] == [5.0, 7.0]
    assert (run.failed, run.requests, run.hits, run.cache_checked) == (1, 3, 1, 2)
    summary = summarize(run, seconds=2.0, cpu_seconds=0.5)
    assert summary["req_per_s"] == 1.0
    assert summary["failed_rate"] == pytest.approx(1 / 3)
    assert summary["hit_ratio"] == 0.5
    assert summary["cpu_s_per_1k"] == 250.0


def test_over_time_buckets_from_the_first_sample() -> None:
    samples = [Sample(100.0, 1.0), Sample(101.0, 3.0), Sample(106.0, 10.0)]
    starts, lines = over_time(samples, 5.0, (50, 99))
    assert starts == [0.0, 5.0]
    assert lines[50] == [1.0, 10.0]
    assert lines[99] == [3.0, 10.0]
    assert over_time([], 5.0, (50,)) == ([], {50: []})


def test_summary_of_an_empty_run_is_nan_not_an_error() -> None:
    summary = summarize(Run([], 0, 0, 0, 0), seconds=1.0, cpu_seconds=1.0)
    assert summary["predicts"] == 0
    assert all(math.isnan(summary[k]) for k in ("p99_ms", "failed_rate", "hit_ratio"))


@pytest.mark.parametrize(
    ("engine", "says"), [("auto", "engine auto"), ("torch-fp32", "engine pinned to torch-fp32")]
)
def test_report_names_the_engine_ours_served(tmp_path: Path, engine: str, says: str) -> None:
    meta = {"command": "make bench", "mode": "short", "started": "2026-12-02 05:00",
            "commit": "abc1234", "cpu": "some CPU", "cpus": 2, "engine": engine}  # fmt: skip
    text = write_report(tmp_path, meta, {}).read_text()
    assert f"`config.pbtxt` ({says})" in text


def test_reports_say_when_kernels_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "capped" not in cpu_summary()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "kernels capped by ONEDNN_MAX_CPU_ISA=AVX2" in cpu_summary()


def test_the_kernel_scores_texts_as_the_cache_miss_profile_sends_them() -> None:
    # perf/k6/lib.js `unseen`: the text, a space, '#', (VU * 100000 + ITER) * 10 + i
    lib = (Path(__file__).parents[2] / "perf" / "k6" / "lib.js").read_text()
    assert "const base = (__VU * 100000 + __ITER) * 10;" in lib
    assert "texts.push(`${sentence} #${base + i}`);" in lib
    assert as_unseen(["a fine film", "a dull one"], vu=3) == ["a fine film #3000000",
                                                              "a dull one #3000010"]  # fmt: skip
