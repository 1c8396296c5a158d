"""`make bench [SHORT=1]`: this stack, the original design and a peer server, one run.

    python -m perf.compare [--short] [--steps profiles sweep lengths under-attack]

Starts the three systems (ours, the original design, MLServer) on
MODEL=standin-base (DistilBERT-base compute), measures the engine ours serves
in-process, runs every k6 profile (perf/k6/) against each, one system at a time
with empty caches, then sweeps concurrency and text length on the cache-miss
path, then runs our stack under each
attack of perf/attacks.py beside an honest client (60 s each; short: 20), and writes
perf/results/<UTC time>-compare/{report.md, results.json, *.png} (raw k6
output and server logs in raw/, not committed). Full: ~60 min; --short: ~20.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkout.paths import RESULTS, ROOT
from checkpoints.cache_dir import default_cache_dir
from devstack.launch import start_otlp_receiver, start_prometheus
from modelctl.convert import calibration, ensure_engines
from modelctl.resolve import resolve
from modelctl.spec import ModelSpec
from perf import engine_check, reports
from perf.compare import tracing_cost, under_attack
from perf.compare.k6run import as_unseen, run_k6
from perf.compare.panels import Panels, plot_panels, record
from perf.compare.plots import plot_latency, plot_lengths, plot_sweep
from perf.compare.report import write_report
from perf.compare.stats import Sample, read_k6_csv, summarize
from perf.compare.systems import System, start_mlserver, start_original, start_ours
from perf.machine import cpu_summary
from perf.procstat import cpu_seconds_split
from perf.triton import kernel
from perf.triton.bench import trials
from trainer.data import default_train_tsv, sst2_sentences


@dataclass(frozen=True)
class Profile:
    name: str
    script: str
    what: str
    full: dict[str, str]
    short: dict[str, str]
    only: str | None = None  # run for this system alone


PROFILES = (
    Profile(
        "original",
        "original.js",
        "the original k6 test: 10 VUs, each iteration `GET /health` + `POST /predict`, 95% "
        "of posts the three fixed sentences, 5% the ten sentences shuffled; stages "
        "10 s ramp / 60 s hold / 10 s down (short: 5/30/5)",
        {"RAMP": "10s", "HOLD": "60s", "DOWN": "10s"},
        {"RAMP": "5s", "HOLD": "30s", "DOWN": "5s"},
    ),
    Profile(
        "cache-miss",
        "cache_miss.js",
        "10 VUs, each `POST /predict` one never-seen SST-2 sentence (plus a ~4-token "
        "numeric marker); 60 s (short: 30 s)",
        {"DURATION": "60s"},
        {"DURATION": "30s"},
    ),
    Profile(
        "mixed-length",
        "mixed_length.js",
        "10 VUs, each `POST /predict` one never-seen text of 4 to 400 tokens (log-uniform: "
        "short phrases to long reviews, median about 40); 60 s (short: 30 s)",
        {"DURATION": "60s"},
        {"DURATION": "30s"},
    ),
    Profile(
        "mixed-length-one-address",
        "mixed_length.js",
        "ours alone: mixed-length with every VU at one client address (users behind one "
        "NAT), where the proxy tells requests apart but not users",
        {"DURATION": "60s", "ADDRESS_PER_VU": "0"},
        {"DURATION": "30s", "ADDRESS_PER_VU": "0"},
        only="ours",
    ),
    Profile(
        "mixed",
        "mixed.js",
        "the original shape at a 50% cache rate no cache can game: half the posts the "
        "three fixed sentences, half ten never-seen SST-2 sentences; 10/60/10 s (short: 5/25/5)",
        {"RAMP": "10s", "HOLD": "60s", "DOWN": "10s"},
        {"RAMP": "5s", "HOLD": "25s", "DOWN": "5s"},
    ),
    Profile(
        "soak",
        "soak.js",
        "the original mix held at 10 VUs for 10 min (short: 45 s): drift and memory growth",
        {"DURATION": "10m"},
        {"DURATION": "45s"},
    ),
)
SWEEP = {"full": ((1, 2, 4, 8, 16), "30s"), "short": ((1, 4, 16), "12s")}
LENGTHS = {"full": ((8, 32, 128, 512), "20s"), "short": ((8, 32, 128, 512), "10s")}
ATTACK_SECONDS = {"full": 60.0, "short": 20.0}
STEPS = ("profiles", "sweep", "lengths", "tracing", "under-attack")


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def measure(
    system: System, script: str, env: dict[str, str], raw: Path, label: str, sentences: Path
) -> tuple[dict[str, Any], list[Sample]]:
    system.flush_cache()
    rss_start, parts_start, batches_start = (
        system.resident_mib(),
        system.cpu_by_part(),
        system.triton_counts(),
    )
    result = run_k6(script, system.url, {**system.k6_env, **env}, raw, label, sentences)
    parts, batches = system.cpu_by_part(), system.triton_counts()
    servers_cpu = {p: s - parts_start.get(p, 0.0) for p, s in parts.items()}
    run = read_k6_csv(result.csv)
    summary: dict[str, Any] = summarize(run, result.seconds, sum(servers_cpu.values()))
    summary |= {
        "rss_start_mib": rss_start,
        "rss_end_mib": system.resident_mib(),
        "thresholds_passed": result.exit_code == 0,
        "cpu_s_by_part": servers_cpu | {"k6": result.cpu_seconds},
    }
    if batches and batches_start and batches[1] > batches_start[1]:
        inferred, executions = batches[0] - batches_start[0], batches[1] - batches_start[1]
        summary["triton_mean_batch"] = inferred / executions
    step(
        f"  {system.name:8s} {summary['req_per_s']:8.1f} req/s  p50 {summary['p50_ms']:7.1f} ms"
        f"  p99 {summary['p99_ms']:7.1f} ms  failed {summary['failed_rate']:.4f}"
        f"  hits {summary['hit_ratio']:.2f}"
    )
    return summary, run.predicts


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every server this run started is stopped."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> int:
    stop_on_sigterm()
    args = parse_args()
    mode, steps = ("short" if args.short else "full"), set(args.steps)
    started = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"{started:%Y%m%dT%H%M%SZ}-compare"
    raw = out / "raw"
    raw.mkdir(parents=True)
    step(f"{mode} run; results in {out.relative_to(ROOT)}")
    commit = reports.commit()  # at the start: what is measured, whatever is committed meanwhile
    results, series, panels = measure_systems(mode, steps, args.engine, raw)
    meta = {
        "command": command_line(args.short, steps, args.engine),
        "engine": args.engine,
        "mode": mode,
        "cpu": cpu_summary(),
        "started": f"{started:%Y-%m-%d %H:%M}",
        "commit": commit,
        "cpus": os.cpu_count(),
        "profiles": {p.name: p.what for p in PROFILES},
        "under_attack": under_attack.WHAT,
    }
    report = write_outputs(out, meta, results, series, panels)
    step(f"report: {report.relative_to(ROOT)}")
    print(report.read_text())
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="shorter windows (~20 min in all)")
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=STEPS,
        default=list(STEPS),
        help="which steps to run (default: all)",
    )
    parser.add_argument(
        "--engine",
        default="auto",
        help="the engine ours serves (config.pbtxt's `engine`; default: auto, as committed)",
    )
    return parser.parse_args()


def command_line(short: bool, steps: set[str], engine: str) -> str:
    """The command that reruns this benchmark, as the report quotes it (pure)."""
    if steps == set(STEPS):
        command = "make bench" + (" SHORT=1" if short else "")
        return command + ("" if engine == "auto" else f" ENGINE={engine}")
    command = "python -m perf.compare" + (" --short" if short else "")
    command += " --steps " + " ".join(s for s in STEPS if s in steps)
    return command + ("" if engine == "auto" else f" --engine {engine}")


def measure_systems(
    mode: str, steps: set[str], engine: str, raw: Path
) -> tuple[dict[str, Any], dict[str, dict[str, list[Sample]]], dict[str, Panels]]:
    """Start the systems, run `steps` against them, stop them: (results,
    latency series per profile and system, our dashboard's panels per profile)."""
    step("getting standin-base (DistilBERT-base compute)")
    checkpoint = resolve(ModelSpec.parse("standin-base"), default_cache_dir())
    # never-seen texts come from SST-2 train, read at run time (not stored in the repo)
    sentences = Path(tempfile.mkdtemp(prefix="bench-sst2-")) / "sentences.json"
    sentences.write_text(json.dumps(sst2_sentences(5000, offset=40000)))

    step(f"starting ours: redis-server, tritonserver (engine {engine}), cache_proxy, "
         "Prometheus")  # fmt: skip
    ours = start_ours(checkpoint, raw, engine)
    assert ours.metrics_targets is not None
    # not one of ours.servers: its CPU and memory are not the stack's
    prometheus = start_prometheus(raw / "prometheus", raw, *ours.metrics_targets)
    results: dict[str, Any] = {}
    series: dict[str, dict[str, list[Sample]]] = {}
    panels: dict[str, Panels] = {}

    def measure_kernel() -> None:  # at the start, beside ours' cache-miss profile, at the end
        results["kernel"] = served_kernel(ours, checkpoint, results.get("kernel"))

    try:
        results["engine_check"] = engine_check_step(ours)
        measure_kernel()
        if steps & {"profiles", "sweep", "lengths"}:
            step("starting the original design: redis-server, uvicorn + FastAPI + pipeline")
            original = start_original(checkpoint, raw)
            step("starting the peer: MLServer + its Hugging Face runtime (adaptive batching)")
            try:
                peer = start_mlserver(checkpoint, raw)
            except BaseException:
                original.stop()
                raise
            try:
                results |= run_all(
                    mode, steps, (ours, original, peer), raw, sentences, prometheus.url,
                    series, panels, measure_kernel,
                )  # fmt: skip
            finally:
                peer.stop()
                original.stop()
        measure_kernel()
        if "tracing" in steps:
            results["tracing"] = tracing_step(ours, checkpoint, raw, sentences, mode)
        if "under-attack" in steps:
            seconds = ATTACK_SECONDS[mode]
            step(f"under attack: the honest client alone, then beside each attack, {seconds} s")
            results["under_attack"] = under_attack.run_all(ours, seconds, step, raw)
    finally:
        prometheus.stop()
        ours.stop()
    return results, series, panels


def tracing_step(
    ours: System, checkpoint: Path, raw: Path, sentences: Path, mode: str
) -> dict[str, Any]:
    """The original profile on ours with tracing off and on (perf/compare/tracing_cost.py):
    a copy of ours per traced setting, on the engine ours serves, into a local receiver."""
    with urllib.request.urlopen(f"{ours.url}/model", timeout=10) as response:
        engine = json.loads(response.read())["model"]["engine"]
    receiver = start_otlp_receiver(raw)
    systems = {"off": ours}
    try:
        for n, (setting, ratio) in enumerate(tracing_cost.SETTINGS.items()):
            if ratio is not None:
                step(f"tracing: a copy of ours ({engine}), {setting}")
                environment = tracing_cost.environment(receiver.url, ratio)
                systems[setting] = start_ours(
                    checkpoint, raw, engine, name=f"traced{n}", tracing=environment
                )
        original = PROFILES[0]
        env = original.short if mode == "short" else original.full

        def receiver_cpu() -> float:
            assert receiver.process is not None
            return sum(cpu_seconds_split(receiver.process.pid))

        def measure_one(setting: str, n: int) -> dict[str, Any]:
            systems[setting].restart_proxy(raw)  # a new process per run (restart_proxy)
            label, before = f"tracing-{setting.replace(' ', '-')}-{n}", receiver_cpu()
            summary = measure(systems[setting], original.script, env, raw, label, sentences)[0]
            return {**summary, "receiver_cpu_s": receiver_cpu() - before}

        def spans() -> int:
            time.sleep(6)  # one export interval (5 s) for the last spans
            with urllib.request.urlopen(f"{receiver.url}/spans", timeout=30) as response:
                return len(json.loads(response.read()))

        return tracing_cost.run(measure_one, spans)
    finally:
        for name, system in systems.items():
            if name != "off":
                system.stop()
        receiver.stop()


def write_outputs(
    out: Path,
    meta: dict[str, Any],
    results: dict[str, Any],
    series: dict[str, dict[str, list[Sample]]],
    panels: dict[str, Panels],
) -> Path:
    """results.json, the plots and report.md; returns the report's path."""
    (out / "results.json").write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    if "profiles" in results:
        plot_latency(series, out / "latency-over-time.png")
        plot_panels(panels, out / "dashboard-panels.png")
    if "sweep" in results:
        plot_sweep(results["sweep"], out / "miss-throughput.png")
    if "lengths" in results:
        plot_lengths(results["lengths"], out / "throughput-by-length.png")
    return write_report(out, meta, results)


def run_all(
    mode: str,
    steps: set[str],
    systems: tuple[System, ...],
    raw: Path,
    sentences: Path,
    prometheus: str,
    series: dict[str, dict[str, list[Sample]]],
    panels: dict[str, Panels],
    after_our_misses: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The profiles (each system in turn), the concurrency sweep and the length
    sweep on the cache-miss path; `series` and `panels` are filled per profile
    (panels: our stack's dashboard, recorded by `prometheus` over its run).
    `after_our_misses` runs right after our stack's cache-miss profile."""
    results: dict[str, Any] = {}
    if "profiles" in steps:
        results["profiles"] = {}
    for profile in PROFILES if "profiles" in steps else ():
        env = profile.short if mode == "short" else profile.full
        step(f"profile {profile.name} ({', '.join(f'{k}={v}' for k, v in env.items())})")
        results["profiles"][profile.name], series[profile.name] = {}, {}
        for system in (s for s in systems if profile.only in (None, s.name)):
            label = f"{profile.name}-{system.name}"
            started = time.time()
            summary, samples = measure(system, profile.script, env, raw, label, sentences)
            results["profiles"][profile.name][system.name] = summary
            series[profile.name][system.name] = samples
            if system.metrics_targets is not None:
                time.sleep(2)  # one more scrape
                panels[profile.name] = record(prometheus, started, time.time())
            if system.name == "ours" and profile.name == "cache-miss":
                after_our_misses()
    if "sweep" in steps:
        levels, duration = SWEEP[mode]
        step(f"cache-miss sweep: VUs {levels}, {duration} each")
        results["sweep"] = sweep_over(
            "vus", levels, lambda vus: {"VUS": str(vus), "DURATION": duration},
            "cache_miss.js", systems, raw, sentences,
        )  # fmt: skip
    if "lengths" in steps:
        lengths, duration = LENGTHS[mode]
        step(f"text-length sweep: {lengths} tokens, 10 VUs, {duration} each")
        results["lengths"] = sweep_over(
            "tokens", lengths, lambda tokens: {"TOKENS": str(tokens), "DURATION": duration},
            "fixed_length.js", systems, raw, sentences,
        )  # fmt: skip
    return results


def sweep_over(
    key: str,
    values: tuple[int, ...],
    env_of: Callable[[int], dict[str, str]],
    script: str,
    systems: tuple[System, ...],
    raw: Path,
    sentences: Path,
) -> dict[str, list[dict[str, Any]]]:
    """One k6 run of `script` per value and system: {system: [{key: value, **summary}]}."""
    rows: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    for value in values:
        for system in systems:
            label = f"{script.removesuffix('.js')}-{key}{value}-{system.name}"
            summary, _ = measure(system, script, env_of(value), raw, label, sentences)
            rows[system.name].append({key: value, **summary})
    return rows


def engine_check_step(ours: System) -> dict[str, Any] | None:
    """With engine auto: the engine a trained checkpoint of the stand-in's
    shape would get on this CPU (perf/engine_check.py), from the stand-in's
    trials as ours' Triton measured them and the trained model's measured in
    process. None when pinned, or without SST-2 to train on."""
    files = sorted(ours.engine_trials.glob("*.json")) if ours.engine_trials else []
    if len(files) != 1 or not default_train_tsv().is_file():
        return None
    step("engine check: the trained model's engine trials, in process")
    trained = resolve(ModelSpec.parse("trained-offline"), default_cache_dir())
    engines = ensure_engines(trained, default_cache_dir(), calibration())
    standin = json.loads(files[0].read_text())
    trained_trials = trials(trained, engines, standin=False)
    return {**engine_check.verdict(standin, trained_trials), "standin_trials": standin,
            "trained_trials": trained_trials}  # fmt: skip


def served_kernel(
    ours: System, checkpoint: Path, before: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The engine our Triton chose, measured in process: its rate at batch 1
    and 32 back to back, its CPU time per text at batch 32, and one text's
    time after an idle gap. `before`: the earlier measurements of the same
    run; the roof is then the best of them for each figure (this machine's
    speed drifts within a run: one is taken right after our cache-miss profile)."""
    with urllib.request.urlopen(f"{ours.url}/model", timeout=10) as response:
        engine = json.loads(response.read())["model"]["engine"]
    step(f"kernel-only {engine} (the engine ours serves): batch 1 and 32, one text after idle")
    classifier = kernel.load(checkpoint, engine, ensure_engines(checkpoint, default_cache_dir(),
                                                                 calibration()))  # fmt: skip
    texts = as_unseen(sst2_sentences(768, offset=30000))  # the cache-miss profile's texts
    rates = {str(b): kernel.sentences_per_second(classifier, texts, b) for b in (1, 32)}
    cpu = kernel.cpu_ms_per_sentence(classifier, texts, 32)
    measured = [*(before or {}).get("measured", []), {**rates, "cpu_ms_32": cpu}]
    return {
        "engine": engine,
        "measured": measured,
        "sentences_per_second": {b: max(m[b] for m in measured) for b in rates},
        "cpu_ms_per_sentence_32": min(m["cpu_ms_32"] for m in measured),
        "isolated_ms": kernel.isolated_ms(classifier, texts[:100]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
