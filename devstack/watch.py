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
        f"fingerprint={model.get('fingerprint')} precision={model.get('precision')}",
    ]
    if model.get("standin"):
        lines.append(f"WARNING: STAND-IN MODEL, {model.get('warning')}")
    lines += [
        "try:",
        f'  curl -s {url}/predict -d \'{{"text": ["I love you!", "I hate you!"]}}\'',
        "Ctrl-C stops all three servers.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
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
