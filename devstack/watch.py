"""Wait for the proxy to be ready, print how to use it, then report changes.

Runs as the `ready` process of `make up`; exits non-zero (stopping the stack)
if the proxy is not ready within --timeout seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

from devstack.monitoring import dashboard_graphs, graph_url
from devstack.process import http_status


def readiness(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return 0, {}


def banner(url: str, body: dict[str, object], seconds: float) -> str:
    model = body.get("model") or {}
    assert isinstance(model, dict)
    lines = [
        f"ready in {seconds:.1f}s: {url}  (redis: {body.get('redis')})",
        f"model: {model.get('name')} source={model.get('source')} "
        f"fingerprint={model.get('fingerprint')} engine={model.get('engine')}",
    ]
    if model.get("standin"):
        lines.append(f"WARNING: STAND-IN MODEL, {model.get('warning')}")
    lines += [
        "try:",
        f'  curl -s {url}/predict -d \'{{"text": ["I love you!", "I hate you!"]}}\'',
        "Ctrl-C stops all three servers.",
    ]
    return "\n".join(lines)


def dashboard_link(prometheus: str, timeout: float = 60) -> str:
    """The graph page with the dashboard's main panels, once Prometheus is ready."""
    deadline = time.monotonic() + timeout
    while http_status(f"{prometheus}/-/ready") != 200:
        if time.monotonic() > deadline:
            return f"Prometheus not ready at {prometheus} after {timeout:.0f}s"
        time.sleep(0.5)
    classic = http_status(f"{prometheus}/classic/graph") == 200
    url = graph_url(prometheus, dashboard_graphs(main_only=True), classic=classic)
    return f"dashboard (Prometheus, main panels of the Grafana dashboard):\n  {url}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prometheus", help="also print the dashboard link of this Prometheus")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    started = time.monotonic()
    status, body = readiness(args.url)
    while status != 200:
        if time.monotonic() - started > args.timeout:
            print(f"not ready after {args.timeout:.0f}s: {body}", flush=True)
            return 1
        time.sleep(0.5)
        status, body = readiness(args.url)
    print(banner(args.url, body, time.monotonic() - started), flush=True)
    if args.prometheus:
        print(dashboard_link(args.prometheus), flush=True)
    last = (status, body.get("redis"))
    while True:
        time.sleep(5)
        status, body = readiness(args.url)
        now = (status, body.get("redis"))
        if now != last:
            print(f"readiness changed: {json.dumps(body)}", flush=True)
            last = now


if __name__ == "__main__":
    sys.exit(main())
