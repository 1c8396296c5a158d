"""What tracing costs the proxy, in instructions: a measure that does not
move with the machine's speed, as req/s do from one run to the next.

    python -m perf.tracing_instructions [--requests 2000] [--ratios 0 0.1 1]

Starts one stack (redis-server, tritonserver with the standin-tiny model, an
OTLP receiver), then, for tracing off and each sampling ratio in turn, the
proxy under valgrind's callgrind: it takes 300 requests to warm up, then
counts the instructions of every thread of the proxy over `--requests` more.
Each request is the original profile's: a health probe, then three fixed
sentences, cache hits. Spans go out in full batches (OTEL_BSP_SCHEDULE_DELAY
60 s), as at the bench's 1,800 req/s and not as at valgrind's 60. Needs
valgrind (Debian). Writes perf/results/<UTC time>-tracing-instructions/.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from checkout.paths import RESULTS, ROOT
from checkpoints.cache_dir import default_cache_dir
from devstack.launch import start_otlp_receiver
from devstack.process import free_port, http_status
from modelctl.resolve import resolve
from modelctl.spec import ModelSpec
from perf import reports
from perf.compare import tracing_cost
from perf.compare.systems import start_ours
from perf.machine import cpu_summary

WARM_UP = 300
BODY = json.dumps({"text": ["I love you!", "I hate you!", "What a film."]})


def send(port: int, requests: int) -> None:
    """The original profile's requests, one after the other."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    for n in range(requests):
        connection.request("GET", "/health")
        connection.getresponse().read()
        headers["X-Forwarded-For"] = f"10.0.0.{n % 10 + 1}"  # ten users, as the profile's VUs
        connection.request("POST", "/predict", BODY, headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"/predict answered {answer.status}")


def instructions(out: Path) -> int:
    """The total of a callgrind output file."""
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"{out}: no totals")


def measure(env: dict[str, str], requests: int, out: Path) -> int:
    """Instructions per request of a proxy started with `env`."""
    port = free_port()
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "cache_proxy",
    ]
    env = {**env, "PROXY_PORT": str(port)}
    with open(out.with_suffix(".log"), "w") as log:
        proxy = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 600  # valgrind: startup is 50x slower
        while http_status(f"http://127.0.0.1:{port}/health/ready") != 200:
            if proxy.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not start: {out.with_suffix('.log')}")
            time.sleep(1)
        send(port, WARM_UP)
        subprocess.run(["callgrind_control", "-i", "on", str(proxy.pid)], check=True)
        send(port, requests)
        subprocess.run(["callgrind_control", "-i", "off", str(proxy.pid)], check=True)
    finally:
        proxy.terminate()  # callgrind writes its counts as the process exits
        try:
            proxy.wait(120)
        except subprocess.TimeoutExpired:
            proxy.kill()
            raise
    return instructions(out) // requests


def report(results: dict[str, Any]) -> str:
    off = results["per_request"]["off"]
    lines = [
        "# What tracing costs the proxy, in instructions",
        "",
        f"`python -m perf.tracing_instructions --requests {results['requests']}`, "
        f"{results['started']} UTC, commit `{results['commit']}`. CPU: {results['cpu']}. "
        "Instructions of every thread of the proxy (callgrind), per original-profile request "
        "(a health probe and three cached sentences); the count does not depend on the "
        "machine's speed, but time per instruction does: cold code (run once in ten "
        "requests) takes longer per instruction than the rest.",
        "",
        "| tracing | instructions per request | ÷ off | per sampled request, beyond none |",
        "|---|---|---|---|",
    ]
    none = results["per_request"].get("0")
    for setting, count in results["per_request"].items():
        ratio = float(setting) if setting != "off" else 0.0
        sampled = f"{(count - none) / ratio / 1000:,.0f}k" if none is not None and ratio > 0 else ""
        name = "off" if setting == "off" else f"sampling ratio {setting}"
        lines.append(f"| {name} | {count / 1000:,.1f}k | {count / off:.4f} | {sampled} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--ratios", nargs="+", default=["0", "0.1", "1"])
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("perf.tracing_instructions needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    started, measured = datetime.datetime.now(datetime.UTC), reports.commit()
    out = RESULTS / f"{started:%Y%m%dT%H%M%SZ}-tracing-instructions"
    raw = out / "raw"
    raw.mkdir(parents=True)
    checkpoint = resolve(ModelSpec.parse("standin-tiny"), default_cache_dir())
    ours = start_ours(checkpoint, raw)
    receiver = start_otlp_receiver(raw)
    try:
        base = {**os.environ, **{k.upper(): v for k, v in ours.proxy_settings.items()}}
        per_request = {"off": measure(base, args.requests, raw / "callgrind.off")}
        for ratio in args.ratios:
            env = {**base, **tracing_cost.environment(receiver.url, ratio)}
            env["OTEL_BSP_SCHEDULE_DELAY"] = "60000"
            per_request[ratio] = measure(env, args.requests, raw / f"callgrind.{ratio}")
            print(f"{ratio}: {per_request[ratio]} instructions per request", flush=True)
    finally:
        receiver.stop()
        ours.stop()
    results = {
        "started": f"{started:%Y-%m-%d %H:%M}",
        "commit": measured,
        "cpu": cpu_summary(),
        "requests": args.requests,
        "per_request": per_request,
    }
    reports.write(out, results, report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
