"""Every engine side by side on this CPU, then Triton end to end, in one run.

    python -m perf.triton.bench [--short]      (make bench-triton)

1. kernel only: each engine (engines.py) on the full-size stand-in
   (standin-base: DistilBERT-base compute, random weights, converted by
   modelctl) at batch 1/8/32 on SST-2 phrases of 8+ words, and transformers'
   padded forward as the baseline for packing; OpenVINO's time per call with
   its inputs padded to other multiples of tokens than the served one;
2. per engine: batch drift against adversarial batch-mates and distance from
   torch fp32 (selection.measure, what `engine: auto` measures at load), and
   held-out accuracy of the SST-2-trained offline model (when the data is here);
3. tritonserver with `engine: auto` (config.pbtxt's) and `auto-fp32` (the
   Deployment's pin), perf_analyzer at concurrency 1/8/16 on other SST-2
   phrases of 8+ words: throughput, p50/p99, and its ratio to the kernel at
   batch 32;
4. the thread layout (instances x intra-op threads) at concurrency 8;
5. the dynamic batcher's delay and preferred sizes, at concurrency 1/8/16;
6. a report in perf/results/<UTC time>-triton/report.md (raw files in raw/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from checkout.paths import MODEL_NAME, RESULTS
from checkout.repository import SOURCE as MODEL_SOURCE
from checkout.repository import (
    copy_model_definition,
    model_module,
    set_batcher,
    set_instance_count,
    set_parameter,
)
from checkpoints.cache_dir import default_cache_dir
from devstack.launch import start_triton
from devstack.process import ServerProcess
from modelctl.convert import calibration, ensure_engines
from modelctl.install import install
from modelctl.resolve import resolve
from modelctl.spec import ModelSpec
from perf.machine import cpu_summary, lscpu
from perf.procstat import resident_mib
from perf.triton import analyzer, kernel
from perf.triton.report import write_report
from trainer.data import default_train_tsv
from trainer.data import sst2_sentences as sentences
from trainer.evaluate import eval_examples, in_process
from trainer.metrics import accuracy_f1
from tritonserve import TritonPorts

BATCH_SIZES = (1, 8, 32)
PADDING_BATCHES = (1, 2, 4, 8, 32)
PADDING_MULTIPLES = (8, 32, 64)  # OpenVINO's token padding, against the served one
CONCURRENCIES = (1, 8, 16)
SERVED = ("auto", "auto-fp32")  # config.pbtxt's engine setting, and the Deployment's pin
LAYOUTS = ((1, 2), (2, 1))  # (instances, intra-op threads each)
BATCHERS = (  # (label, max_queue_delay_microseconds, every size preferred)
    ("no delay (served)", 0, False),
    ("every size preferred, 2 ms delay", 2000, True),
    ("every size preferred, no delay", 0, True),
    ("2 ms delay", 2000, False),
)


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def phrases(count: int, offset: int) -> list[str]:
    """SST-2 train phrases of 8+ words (the short fragments are much cheaper)."""
    return [t for t in sentences(count * 4, offset=offset) if len(t.split()) >= 8][:count]


def workloads(short: bool) -> tuple[list[str], list[str]]:
    """(what perf_analyzer sends, what the kernel scores): different phrases of
    the same kind, so the report can divide Triton's rate by the kernel's (all
    SST-2 sentences are about 40% shorter than its phrases of 8+ words). The
    kernel gets 3 passes of fresh texts."""
    return phrases(1000, offset=20000), phrases(192 if short else 384, offset=30000)


def serve(
    checkpoint: Path,
    engines: Path,
    raw: Path,
    name: str,
    config: str,
    env: dict[str, str] | None = None,
) -> tuple[ServerProcess, str, TritonPorts]:
    """tritonserver on a copy of the model with `config` (`env`: more of its
    environment), ready: (server, host:port, ports). Its engine choice (auto)
    is measured afresh: a private cache directory."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    repository = copy_model_definition(workdir / "repo", config)
    (raw / f"config-{name}.pbtxt").write_text(config)
    install(checkpoint, repository, engines=engines)
    env = {**(env or {}), "XDG_CACHE_HOME": str(workdir / "xdg")}
    server, ports = start_triton(repository, raw, env=env)
    return server, f"127.0.0.1:{ports.http}", ports


def served_engine(url: str) -> str:
    """The engine named in the served MODEL_INFO."""
    import numpy as np
    import tritonclient.http as httpclient

    text = httpclient.InferInput("TEXT", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"x"]], dtype=np.object_))
    client = httpclient.InferenceServerClient(url)
    try:
        result = client.infer(MODEL_NAME, [text],
                              outputs=[httpclient.InferRequestedOutput("MODEL_INFO")])  # fmt: skip
    finally:
        client.close()
    return str(json.loads(result.as_numpy("MODEL_INFO")[0][0])["engine"])


def kernels(checkpoint: Path, engines: Path, texts: list[str]) -> dict[str, dict[int, float]]:
    names = model_module("engines").available(engines)
    rates: dict[str, dict[int, float]] = {}
    for name in names:
        step(f"kernel-only {name}: batch sizes {BATCH_SIZES}")
        classifier = kernel.load(checkpoint, name, engines)
        rates[name] = {b: kernel.sentences_per_second(classifier, texts, b) for b in BATCH_SIZES}
        del classifier
    step("kernel-only transformers padded forward (torch fp32)")
    rates["padded torch-fp32"] = {
        b: kernel.padded_sentences_per_second(checkpoint, texts, b) for b in BATCH_SIZES
    }
    return rates


def paddings(checkpoint: Path, engines: Path, texts: list[str]) -> dict[str, Any]:
    """Per OpenVINO engine: its time per call with inputs padded to other
    multiples of tokens, against the served multiple (engines.SHAPE_TOKENS)."""
    shapes = model_module("engines")
    served = shapes.SHAPE_TOKENS
    ratios = {}
    for name in shapes.available(engines):
        if name.startswith("openvino-"):
            step(f"{name}: padding to multiples of {PADDING_MULTIPLES} against {served} tokens")
            classifier = kernel.load(checkpoint, name, engines)
            ratios[name] = kernel.padding_ratios(
                classifier, lambda m: setattr(shapes, "SHAPE_TOKENS", m),
                texts, PADDING_BATCHES, PADDING_MULTIPLES, served,
            )  # fmt: skip
            del classifier
    return {"served": served, "texts": shapes.SHAPE_TEXTS, "ratios": ratios}


def trials(checkpoint: Path, engines: Path, *, standin: bool) -> list[dict[str, Any]]:
    """selection.measure's trials, each with whether `engine: auto` would
    qualify it for this checkpoint."""
    selection = model_module("selection")
    names = model_module("engines").available(engines)
    measured = selection.measure(names, lambda n: kernel.load(checkpoint, n, engines).predict)
    rule = selection.Rule.of(measured, standin=standin)
    return [{**asdict(t), "qualifies": rule.qualifies(t)} for t in measured]


def accuracies(checkpoint: Path, engines: Path) -> dict[str, float]:
    _, heldout = eval_examples(None, checkpoint)
    texts, labels = [e.text for e in heldout], [e.label for e in heldout]
    result = {}
    for name in model_module("engines").available(engines):
        step(f"held-out accuracy {name} ({len(texts)} sentences)")
        result[name], _ = accuracy_f1(labels, in_process(checkpoint, name, texts, engines))
    return result


def end_to_end(
    checkpoint: Path, engines: Path, raw: Path, input_data: Path, interval: int
) -> tuple[dict[str, Any], dict[str, float]]:
    base = (MODEL_SOURCE / "config.pbtxt").read_text()
    triton: dict[str, Any] = {}
    memory: dict[str, float] = {}
    for setting in SERVED:
        step(f"triton engine {setting}: starting")
        config = set_parameter(base, "engine", setting)
        server, url, _ = serve(checkpoint, engines, raw, setting, config)
        try:
            engine = served_engine(url)
            memory[engine] = resident_mib(server.process.pid)  # type: ignore[union-attr]
            rows = []
            for concurrency in CONCURRENCIES:
                step(f"triton {setting} ({engine}): perf_analyzer concurrency {concurrency}")
                csv_path = raw / f"pa-{setting}-c{concurrency}.csv"
                measured = analyzer.run(url, input_data, concurrency, csv_path,
                                        interval_ms=interval)  # fmt: skip
                rows.append(asdict(measured))
            triton[setting] = {"engine": engine, "rows": rows}
        finally:
            server.stop()
    return triton, memory


def layouts(
    checkpoint: Path, engines: Path, raw: Path, input_data: Path, interval: int
) -> list[dict[str, Any]]:
    base = (MODEL_SOURCE / "config.pbtxt").read_text()
    rows = []
    for instances, threads in LAYOUTS:
        step(f"layout {instances} instance(s) x {threads} thread(s), engine auto, concurrency 8")
        config = set_instance_count(base, instances)
        config = set_parameter(config, "intra_op_threads", str(threads))
        server, url, _ = serve(checkpoint, engines, raw, f"layout-{instances}x{threads}", config)
        try:
            csv_path = raw / f"pa-layout-{instances}x{threads}.csv"
            measured = analyzer.run(url, input_data, 8, csv_path, interval_ms=interval)
            rows.append({"instances": instances, "threads": threads,
                         "engine": served_engine(url), **asdict(measured)})  # fmt: skip
        finally:
            server.stop()
    return rows


def batchers(
    checkpoint: Path, engines: Path, raw: Path, input_data: Path, interval: int
) -> list[dict[str, Any]]:
    base = (MODEL_SOURCE / "config.pbtxt").read_text()
    rows = []
    for number, (label, delay_us, preferred) in enumerate(BATCHERS):
        step(f"batcher: {label}, engine auto, concurrency {CONCURRENCIES}")
        config = set_batcher(base, delay_us, every_size_preferred=preferred)
        server, url, _ = serve(checkpoint, engines, raw, f"batcher-{number}", config)
        try:
            for concurrency in CONCURRENCIES:
                csv_path = raw / f"pa-batcher-{number}-c{concurrency}.csv"
                measured = analyzer.run(url, input_data, concurrency, csv_path,
                                        interval_ms=interval)  # fmt: skip
                rows.append({"batcher": label, "delay_us": delay_us,
                             "every_size_preferred": preferred, **asdict(measured)})  # fmt: skip
        finally:
            server.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="shorter windows")
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{stamp}-triton"
    raw = out / "raw"
    raw.mkdir(parents=True)
    (raw / "lscpu.txt").write_text(lscpu())
    interval = 4000 if args.short else 8000

    step("checking perf_analyzer's libraries")
    analyzer.ensure_installed()
    cache = default_cache_dir()
    step("getting standin-base (DistilBERT-base compute) and converting it to every engine")
    checkpoint = resolve(ModelSpec.parse("standin-base"), cache)
    engines = ensure_engines(checkpoint, cache, calibration())
    served_texts, texts = workloads(args.short)
    input_data = analyzer.write_input_data(served_texts, raw / "sst2.json")

    results: dict[str, Any] = {"cpu": cpu_summary(), "texts": len(texts)}
    results["kernel"] = kernels(checkpoint, engines, texts)
    results["padding"] = paddings(checkpoint, engines, texts)
    step("engine trials (batch drift, distance from torch fp32) on standin-base")
    results["trials"] = trials(checkpoint, engines, standin=True)
    if default_train_tsv().is_file():
        step("the SST-2-trained offline model and its engines")
        trained = resolve(ModelSpec.parse("trained-offline"), cache)
        trained_engines = ensure_engines(trained, cache, calibration())
        results["accuracy"] = accuracies(trained, trained_engines)
        results["trained_trials"] = trials(trained, trained_engines, standin=False)
    results["triton"], results["memory_mib"] = end_to_end(
        checkpoint, engines, raw, input_data, interval
    )
    results["layout"] = layouts(checkpoint, engines, raw, input_data, interval)
    results["batcher"] = batchers(checkpoint, engines, raw, input_data, interval)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    results = json.loads((out / "results.json").read_text())  # the report reads what is saved
    command = "make bench-triton" + (" SHORT=1" if args.short else "")
    report = write_report(out / "report.md", results, command)
    step(f"report: {report}")
    print(report.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
