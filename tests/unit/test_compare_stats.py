"""perf/compare's arithmetic on k6 CSV output and Triton's metrics (pure
functions), and the CPU accounting it reports (real child processes)."""

from __future__ import annotations

import gzip
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devstack.process import ServerProcess, free_port
from perf.compare import tracing_cost
from perf.compare.__main__ import STEPS, command_line
from perf.compare.k6run import as_unseen, children_cpu_seconds
from perf.compare.report import KERNEL_SHARE, miss_ceiling, miss_cpu_section, write_report
from perf.compare.stats import (
    Run,
    Sample,
    over_time,
    percentile,
    read_k6_csv,
    summarize,
    triton_counts,
)
from perf.compare.systems import System
from perf.compare.targets import check
from perf.machine import cpu_summary

HEADER = "metric_name,timestamp,metric_value,name\n"


def write_csv(path: Path, header: str, rows: list[str]) -> None:
    """A k6 CSV output (gzip) of `rows` under `header`."""
    with gzip.open(path, "wt") as handle:
        handle.write(header + "\n".join(rows) + "\n")


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
    write_csv(path, HEADER, rows)
    run = read_k6_csv(path)
    assert [s.ms for s in run.predicts] == [5.0, 7.0]
    assert (run.failed, run.requests, run.hits, run.cache_checked) == (1, 3, 1, 2)
    summary = summarize(run, seconds=2.0, cpu_seconds=0.5)
    assert summary["req_per_s"] == 1.0
    assert summary["failed_rate"] == pytest.approx(1 / 3)
    assert summary["hit_ratio"] == 0.5
    assert summary["cpu_s_per_1k"] == 250.0


def test_read_k6_csv_groups_latencies_by_length_class(tmp_path: Path) -> None:
    path = tmp_path / "run.csv.gz"
    rows = [
        "http_req_duration,1000,5.0,predict,tokens=4-15",
        "http_req_duration,1000,900.0,predict,tokens=256-400",
        "http_req_duration,1000,7.0,predict,tokens=4-15",
        "http_req_duration,1000,60.0,predict,tokens=16-63&other=x",
        "http_req_duration,1000,1.0,predict,",
        "http_req_duration,1000,2.0,predict,texts=fixed",
        "http_req_duration,1000,300.0,predict,texts=new",
    ]
    write_csv(path, "metric_name,timestamp,metric_value,name,extra_tags\n", rows)
    summary = summarize(read_k6_csv(path), seconds=1.0, cpu_seconds=0.0)
    assert summary["by_texts"] == {
        "fixed": {"n": 1, "p50_ms": 2.0, "p99_ms": 2.0},
        "new": {"n": 1, "p50_ms": 300.0, "p99_ms": 300.0},
    }
    assert list(summary["by_length"]) == ["4-15", "16-63", "256-400"]
    assert summary["by_length"]["4-15"] == {"n": 2, "p50_ms": 5.0, "p99_ms": 7.0}
    assert summary["by_length"]["256-400"]["p99_ms"] == 900.0
    assert summary["predicts"] == 7


def test_over_time_buckets_from_the_first_sample() -> None:
    samples = [Sample(100.0, 1.0), Sample(101.0, 3.0), Sample(106.0, 10.0)]
    starts, lines = over_time(samples, 5.0, (50, 99))
    assert starts == [0.0, 5.0]
    assert lines[50] == [1.0, 10.0]
    assert lines[99] == [3.0, 10.0]
    assert over_time([], 5.0, (50,)) == ([], {50: []})


def test_summary_of_an_empty_run_is_nan_not_an_error() -> None:
    summary = summarize(Run([], 0, 0, 0, 0, {}), seconds=1.0, cpu_seconds=1.0)
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


# tritonserver 2.51's /metrics, trimmed (two models, so counts add up)
TRITON_METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="distilbert_sst2",version="1"} 23748
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="distilbert_sst2",version="1"} 23748
nv_inference_count{model="other",version="1"} 2
# HELP nv_inference_exec_count Number of model executions performed
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="distilbert_sst2",version="1"} 5147
nv_inference_exec_count{model="other",version="1"} 1
"""


def test_triton_counts_reads_inferences_and_executions() -> None:
    assert triton_counts(TRITON_METRICS) == (23750.0, 5148.0)
    assert triton_counts("") == (0.0, 0.0)


BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_a_silent_metrics_endpoint_costs_the_batch_sizes_not_the_run() -> None:
    quiet = System("ours", "", None, metrics_targets=("127.0.0.1:1", f"127.0.0.1:{free_port()}"))
    assert quiet.triton_counts() is None
    assert System("original", "", None).triton_counts() is None


def test_k6_cpu_is_the_finished_child_s() -> None:
    before = children_cpu_seconds()
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert 0.3 <= children_cpu_seconds() - before < 2


def test_cpu_by_part_splits_a_server_from_its_child_processes(tmp_path: Path) -> None:
    # like tritonserver and its Python backend stub: the child does the work, and lives on
    child = BURN + "time.sleep(60)\n"
    parent = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {child!r}])\n"
    server = ServerProcess("stack-4242", [sys.executable, "-c", parent], tmp_path).start()
    system = System("ours", "", None, [server])
    try:
        deadline = time.monotonic() + 30
        # /proc counts whole clock ticks: the child's 0.3 s may read 0.29
        while system.cpu_by_part().get("stack children", 0) < 0.25:
            assert time.monotonic() < deadline, system.cpu_by_part()
            time.sleep(0.05)
        parts = system.cpu_by_part()
        assert set(parts) == {"stack", "stack children"}
        assert parts["stack"] < 0.3
    finally:
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


def miss_results(req_per_s: float, engine_ms: float) -> dict[str, Any]:
    predicts = 1000
    parts = {"redis": 0.1, "triton": 0.3, "triton children": 8.0, "proxy": 2.0, "k6": 0.6}
    ours = {"predicts": predicts, "req_per_s": req_per_s, "triton_mean_batch": 4.7,
            "cpu_s_by_part": {p: ms * predicts / 1000 for p, ms in parts.items()}}  # fmt: skip
    kernel = {"sentences_per_second": {"1": 175.0, "32": 424.0},
              "cpu_ms_per_sentence_32": engine_ms}  # fmt: skip
    return {"profiles": {"cache-miss": {"ours": ours}}, "kernel": kernel}


def test_the_miss_path_ceiling_counts_every_process_outside_the_stub() -> None:
    ceiling = miss_ceiling(miss_results(160.0, 4.7), cpus=2)
    assert ceiling is not None
    assert ceiling.ms_by_part == pytest.approx(
        {"redis": 0.1, "triton": 0.3, "triton children": 8.0, "proxy": 2.0, "k6": 0.6}
    )
    assert ceiling.outside_ms == pytest.approx(3.0)  # 0.1 + 0.3 + 2.0 + 0.6: all but the stub
    assert ceiling.req_per_s == pytest.approx(2 / (3.0 + 4.7) * 1000)  # 260 req/s
    assert ceiling.share == pytest.approx(2 / (3.0 + 4.7) * 1000 / 424)  # 0.613
    assert not ceiling.reaches_target and not ceiling.drifted


def test_a_ceiling_at_the_target_share_reaches_it() -> None:
    # 2 / (3.00 + x) ms = 0.7 x 424 req/s at x = 3.738
    below = miss_ceiling(miss_results(160.0, 3.74), cpus=2)
    at = miss_ceiling(miss_results(160.0, 3.73), cpus=2)
    assert below is not None and at is not None
    assert below.share < KERNEL_SHARE <= at.share
    assert not below.reaches_target and at.reaches_target


def test_the_miss_path_ceiling_says_when_the_machine_drifted_past_it() -> None:
    # the kernel was measured while this VM ran slower than during the profile
    ceiling = miss_ceiling(miss_results(300.0, 4.7), cpus=2)
    assert ceiling is not None and ceiling.drifted


def test_the_miss_path_ceiling_needs_the_cpu_split_and_the_kernel() -> None:
    assert miss_ceiling({"profiles": {}}, cpus=2) is None
    assert miss_cpu_section({"profiles": {}}, cpus=2) == []
    no_kernel = {**miss_results(160.0, 0.5), "kernel": {}}
    assert miss_ceiling(no_kernel, cpus=2) is None


def figures(req_per_s: float, p50_ms: float = 1.0, p99_ms: float = 1.0) -> dict[str, float]:
    return {"req_per_s": req_per_s, "p50_ms": p50_ms, "p99_ms": p99_ms, "failed_rate": 0.0}


def test_targets_are_checked_on_the_figures_of_one_run() -> None:
    results = {
        "profiles": {
            "original": {
                "ours": figures(300.0, 3.0, 20.0),
                "original": figures(30.0),
                "mlserver": figures(10.0),
            },
            "cache-miss": {"ours": figures(100.0, 40.0, 130.0), "original": figures(20.0)},
            "mixed": {  # half the requests are cache hits: the tails are the new texts'
                "ours": {**figures(30.0, 5.0, 400.0), "by_texts": {"new": figures(0, 100, 250)}},
                "mlserver": {**figures(10.0), "by_texts": {"new": figures(0, 400, 500)}},
            },
        },
        "kernel": {"engine": "e", "sentences_per_second": {"1": 100.0, "32": 125.0}},
        "sweep": {"ours": [{"vus": 1, "p50_ms": 12.0}]},
    }
    checks = {c.target.what: (pytest.approx(c.measured), c.met) for c in check(results)}
    assert checks == {
        "original: req/s ÷ the original's": (10.0, True),
        "original: p99 ms": (20.0, True),
        "original: failed share": (0.0, True),
        "original: req/s ÷ MLServer's": (30.0, True),
        "cache-miss: req/s ÷ the original's": (5.0, False),
        "cache-miss: req/s ÷ the original's, any CPU": (5.0, True),
        "cache-miss: p99 ms": (130.0, False),
        "cache-miss: p99 ÷ p50": (3.25, False),
        "cache-miss: req/s ÷ the served engine's batch-32 kernel rate": (0.8, True),
        "one user: p50 ÷ the served engine's batch-1 kernel time": (1.2, True),
        "mixed (new texts): p99 ÷ p50": (2.5, True),
        "mixed (new texts): p99 ÷ MLServer's": (0.5, True),
        "mixed: req/s ÷ MLServer's": (3.0, True),
    }  # what this run did not measure (soak, mixed-length, ...) is left out


def test_the_report_quotes_the_command_that_reruns_it() -> None:
    assert command_line(True, set(STEPS), "auto") == "make bench SHORT=1"
    assert command_line(False, set(STEPS), "openvino-fp32") == "make bench ENGINE=openvino-fp32"
    assert (
        command_line(True, {"lengths", "profiles"}, "auto")
        == "python -m perf.compare --short --steps profiles lengths"
    )


def test_tracing_rounds_put_every_setting_in_every_place() -> None:
    """Runs later in a round read slower on this VM: with a fixed order the
    setting measured last pays for it."""
    order: list[str] = []

    def measure(setting: str, n: int) -> dict[str, Any]:
        order.append(setting)
        return {"req_per_s": 100.0, "p99_ms": 1.0}

    tracing_cost.run(measure, lambda: 0)
    settings = list(tracing_cost.SETTINGS)
    rounds = [order[i : i + len(settings)] for i in range(0, len(order), len(settings))]
    assert len(rounds) == tracing_cost.ROUNDS and tracing_cost.ROUNDS % len(settings) == 0
    for place in range(len(settings)):
        places = [r[place] for r in rounds]
        assert all(places.count(s) == places.count(settings[0]) for s in settings)
