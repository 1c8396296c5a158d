"""Kernel-only vs Triton end to end, per precision, in one run.

    python -m perf.triton.bench [--short]      (make bench-triton)

1. kernel-only forward of the full-size stand-in (standin-base: DistilBERT-base
   compute, random weights) at batch 1/4/16/32 on real SST-2 sentences, and
   one layer's Linear layers alone (the part int8 speeds up);
2. tritonserver serving the same checkpoint, driven by perf_analyzer with
   SST-2 sentences at concurrency 1/4/8/16, once per precision;
3. the thread layout (instances x intra-op threads) at concurrency 8;
4. a report in perf/results/<UTC time>-triton/report.md (raw files in raw/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from checkpoints.cache_dir import default_cache_dir
from devstack.launch import start_triton
from devstack.paths import RESULTS
from devstack.process import ServerProcess
from devstack.repository import SOURCE as MODEL_SOURCE
from devstack.repository import (
    copy_model_definition,
    get_parameter,
    set_instance_count,
    set_parameter,
)
from modelctl.install import install
from modelctl.resolve import resolve
from modelctl.spec import ModelSpec
from perf.procstat import resident_mib
from perf.triton import analyzer, kernel
from perf.triton.report import write_report
from trainer.data import sst2_sentences as sentences
from tritonserve import TritonPorts

PRECISIONS = ("fp32", "int8")
BATCH_SIZES = (1, 4, 16, 32)
CONCURRENCIES = (1, 4, 8, 16)
LAYOUTS = ((1, 2), (2, 1))  # (instances, intra-op threads each)
LINEAR_TOKENS = (16, 128)  # about one SST-2 sentence, and a batch of eight


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def serve(
    checkpoint: Path, raw: Path, name: str, config: str
) -> tuple[ServerProcess, str, TritonPorts]:
    """tritonserver on a copy of the model with `config`, ready: (server, host:port, ports)."""
    repository = copy_model_definition(Path(tempfile.mkdtemp(prefix=f"bench-{name}-")), config)
    (raw / f"config-{name}.pbtxt").write_text(config)
    install(checkpoint, repository)
    server, ports = start_triton(repository, raw)
    return server, f"127.0.0.1:{ports.http}", ports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="shorter windows (~4 min)")
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{stamp}-triton"
    raw = out / "raw"
    raw.mkdir(parents=True)
    interval = 4000 if args.short else 8000

    step("checking perf_analyzer's libraries")
    analyzer.ensure_installed()
    step("getting standin-base (DistilBERT-base compute)")
    checkpoint = resolve(ModelSpec.parse("standin-base"), default_cache_dir())
    input_data = analyzer.write_input_data(sentences(1000, offset=20000), raw / "sst2.json")
    kernel_texts = sentences(128 if args.short else 256, offset=30000)
    base_config = (MODEL_SOURCE / "config.pbtxt").read_text()

    results: dict[str, object] = {
        "kernel": {},
        "linear_ms": {},
        "triton": {},
        "layout": [],
        "memory_mib": {},
    }
    for precision in PRECISIONS:
        step(f"kernel-only {precision}: batch sizes {BATCH_SIZES}")
        model = kernel.load(checkpoint, precision, threads=2)
        results["kernel"][precision] = {  # type: ignore[index]
            size: kernel.sentences_per_second(model, kernel_texts, size) for size in BATCH_SIZES
        }
        del model
        step(f"linear layers alone {precision}: {LINEAR_TOKENS} tokens")
        results["linear_ms"][precision] = {  # type: ignore[index]
            tokens: kernel.linear_layer_ms(tokens, precision) for tokens in LINEAR_TOKENS
        }
    for precision in PRECISIONS:
        step(f"triton {precision}: starting")
        config = set_parameter(base_config, "precision", precision)
        server, url, _ = serve(checkpoint, raw, precision, config)
        try:
            results["memory_mib"][precision] = resident_mib(server.process.pid)  # type: ignore[index,union-attr]
            rows = []
            for concurrency in CONCURRENCIES:
                step(f"triton {precision}: perf_analyzer concurrency {concurrency}")
                csv_path = raw / f"pa-{precision}-c{concurrency}.csv"
                rows.append(asdict(analyzer.run(url, input_data, concurrency, csv_path,
                                                interval_ms=interval)))  # fmt: skip
            results["triton"][precision] = rows  # type: ignore[index]
        finally:
            server.stop()
    default = default_precision(base_config)
    for instances, threads in LAYOUTS:
        step(f"layout {instances} instance(s) x {threads} thread(s), {default}, concurrency 8")
        config = set_instance_count(base_config, instances)
        config = set_parameter(config, "intra_op_threads", str(threads))
        server, url, _ = serve(checkpoint, raw, f"layout-{instances}x{threads}", config)
        try:
            csv_path = raw / f"pa-layout-{instances}x{threads}.csv"
            measured = analyzer.run(url, input_data, 8, csv_path, interval_ms=interval)
            results["layout"].append(  # type: ignore[attr-defined]
                {"instances": instances, "threads": threads, **asdict(measured)}
            )
        finally:
            server.stop()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report = write_report(out / "report.md", results, default, " ".join(["make bench-triton"]
                          + (["SHORT=1"] if args.short else [])))  # fmt: skip
    step(f"report: {report}")
    print(report.read_text())
    return 0


def default_precision(config: str) -> str:
    precision = get_parameter(config, "precision")
    if precision not in PRECISIONS:
        raise ValueError("config.pbtxt's precision is not one of " + ", ".join(PRECISIONS))
    return precision


if __name__ == "__main__":
    raise SystemExit(main())
