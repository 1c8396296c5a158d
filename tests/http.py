"""A tiny real-HTTP client for the tests (urllib: no extra client library)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def predict(url: str, texts: list[str]) -> Reply:
    """POST /predict the way the original k6 script does: no Content-Type."""
    return request("POST", f"{url}/predict", json.dumps({"text": texts}).encode())


READY_MAX_AGE = 1.0  # cache_proxy.predictor.READY_MAX_AGE_SECONDS


def readiness(url: str, field: str, expected: str, seconds: float = READY_MAX_AGE + 2) -> Reply:
    """/health/ready once its `field` reads `expected`: readiness answers from
    a check up to a second old, so a change shows within that (plus a probe).
    The last reply, for the caller to assert on, if it never does."""
    deadline = time.monotonic() + seconds
    while True:
        reply = request("GET", f"{url}/health/ready", timeout=seconds)
        if reply.json().get(field) == expected or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def scores(reply: Reply) -> list[list[float]]:
    """The score lists of a 200 /predict reply, one per text."""
    assert reply.status == 200, reply.body
    return [[p["score"] for p in entry] for entry in reply.json()["predictions"]]


def metric_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A server's /metrics: (sample name, sorted labels) -> value."""
    text = request("GET", f"{url}/metrics").body.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def proxy_counts(urls: list[str]) -> dict[str, float]:
    """Cache hits and misses, refused answers and declined calls, summed over the proxies."""
    counts = {"hit": 0.0, "miss": 0.0, "refused": 0.0, "declined": 0.0}
    for url in urls:
        text = request("GET", f"{url}/metrics").body.decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "proxy_cache_lookups_total":
                    result = sample.labels["result"]
                    counts[result] = counts.get(result, 0.0) + sample.value
                elif sample.name == "proxy_model_answers_refused_total":
                    counts["refused"] += sample.value
                elif sample.name == "proxy_model_calls_declined_total":
                    counts["declined"] += sample.value
    return counts


def hit_ratio(counts: dict[str, float]) -> float:
    return counts["hit"] / (counts["hit"] + counts["miss"])
