"""A rolling model update, then a scale-down, under load: zero failed requests.

Three Triton replicas (processes) serve the old model behind HAProxy (see
rollout.py); two proxies and Redis sit in front (prod runs 2 to 6 proxies),
with the original k6 profile on one, the cache-miss profile on the other,
plus an observer that checks every score it gets and asks each proxy in
turn. The replicas are replaced one at a time as `kubectl rollout` would
(maxSurge 1, maxUnavailable 0, readiness before traffic, preStop and drain
before exit, all read from the Triton Deployment), then one is removed.

Required, and asserted:
- zero failed requests (k6's and the observer's);
- no flip-flop: no request sent to a proxy after a new-model answer from that
  proxy arrived gets an old-model answer;
- the proxies agree: a proxy that met the new model shares it through Redis
  (cache_proxy/fleet.py), so no proxy gives an old-model answer to a request
  sent more than MODEL_REFRESH_SECONDS (plus a second for its refresh to run)
  after the first new-model answer from any proxy (`proxies_apart_seconds`);
- no old-model answer is served as the new model's (the new model is the old
  one with its labels swapped, so its scores are the old ones reversed);
- work is computed twice only if it was in flight when a proxy moved: once a
  proxy retired the old release, old replicas decline its calls before
  computing (cache_proxy/backend.py), so refused answers (computed, then asked
  again) are at most the requests the load keeps in flight;
- behind the per-connection balancer, the proxies' connections move to the
  new replicas: declined calls stay under DECLINED_AT_MOST.
The figures go to .artifacts/rollout-<balancing>.json and the test log.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import itertools
import json
import math
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from checkout.repository import SOURCE as MODEL_SOURCE
from checkout.repository import set_parameter
from devstack.process import ServerProcess
from perf.compare.k6run import SCRIPTS, k6_command, k6_env
from tests.browser import ARTIFACTS
from tests.deploy.manifests import of_kind, render
from tests.deploy.rollout import BALANCING, Balancer, Deployment, Lifecycle
from tests.http import predict, proxy_counts
from tests.stack import launch_proxy, swapped_labels_checkpoint
from trainer.data import sst2_sentences

pytestmark = pytest.mark.integration
PROXIES = ("proxy-a", "proxy-b")
REPLICAS = 3
REFRESH_SECONDS = 1.0  # the proxies' MODEL_REFRESH_SECONDS
VUS = (3, 2)  # k6's users: the original profile's, the cache-miss profile's
IN_FLIGHT = sum(VUS) + 1  # requests the load keeps in flight (and the observer's)
# Behind a per-connection balancer, calls old replicas declined: a proxy's
# connections to them are closed at their first decline (cache_proxy/channels.py),
# so a handful per connection, not one per call for the whole rollout (thousands).
DECLINED_AT_MOST = 200
FIXED = ["I love you!", "I hate you!", "I am a Kubernetes Cluster!"]  # the original's texts


@dataclass(frozen=True)
class Answer:
    sent: float  # epoch seconds
    received: float
    status: int
    fingerprint: str
    proxy: str
    texts: tuple[str, ...] = ()
    scores: tuple[tuple[float, ...], ...] = ()
    error: str = ""  # a failed request's body (the observer's; k6 records no body)


@dataclass
class Observer:
    """Sends the original's cached texts plus a new one, to each proxy in turn,
    in a loop, and keeps every answer."""

    urls: dict[str, str]  # proxy name -> its URL
    answers: list[Answer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        proxies = itertools.cycle(self.urls.items())
        while not self.stopping.is_set():
            proxy, url = next(proxies)
            texts = (*FIXED, f"observer {uuid.uuid4().hex[:8]}")
            sent = time.time()
            try:
                reply = predict(url, list(texts))
            except Exception as exc:  # a reset or a timeout: a failed request, not a dead observer
                self.answers.append(Answer(sent, time.time(), 0, "none", proxy, error=repr(exc)))
                time.sleep(0.05)
                continue
            fingerprint = reply.headers.get("X-Model-Fingerprint", "none")
            answer = Answer(sent, time.time(), reply.status, fingerprint, proxy)
            if reply.status == 200:
                rows = tuple(
                    tuple(p["score"] for p in entry) for entry in reply.json()["predictions"]
                )
                answer = dataclasses.replace(answer, texts=texts, scores=rows)
            else:
                answer = dataclasses.replace(answer, error=reply.body.decode(errors="replace"))
            self.answers.append(answer)
            time.sleep(0.05)


def k6_answers(csv_path: Path, proxy: str) -> list[Answer]:
    """The model_answers samples k6 wrote (RECORD_MODEL=1 in perf/k6/lib.js)."""
    answers = []
    with gzip.open(csv_path, "rt") as handle:
        for row in csv.DictReader(handle):
            if row["metric_name"] != "model_answers":
                continue
            tags = dict(pair.split("=", 1) for pair in row["extra_tags"].split("&") if pair)
            received = int(row["timestamp"]) / 1000
            answers.append(
                Answer(
                    int(tags["sent"]) / 1000,
                    received,
                    int(row["status"]),
                    tags["fingerprint"],
                    proxy,
                )
            )
    return answers


def check_k6(workdir: Path, name: str) -> int:
    """k6's own verdict on one profile: it ran, and every request it sent
    (GET /health included) and every check passed. Its request count."""
    metrics = json.loads((workdir / f"{name}-summary.json").read_text())["metrics"]
    log = (workdir / f"{name}-k6.log").read_text()[-2000:]
    assert metrics["http_reqs"]["count"] > 50, (name, metrics["http_reqs"], log)
    assert metrics["http_req_failed"]["value"] == 0, (name, metrics["http_req_failed"], log)
    assert metrics["checks"]["fails"] == 0, (name, metrics["checks"], log)
    return int(metrics["http_reqs"]["count"])


@contextmanager
def load(
    urls: dict[str, str], workdir: Path
) -> Iterator[tuple[Observer, dict[str, tuple[str, Path]]]]:
    """k6's original profile on the first proxy and its cache-miss profile on
    the last, plus the observer on each in turn, until the block ends. Yields
    the observer and, for each proxy, its k6 profile's name and output."""
    sentences = workdir / "sentences.json"
    sentences.write_text(json.dumps(sst2_sentences(2000, offset=40000)))
    first, *_, last = urls
    profiles = {first: ("original", str(VUS[0])), last: ("cache_miss", str(VUS[1]))}
    runs, outputs, logs = [], {}, []
    for proxy, (name, vus) in profiles.items():
        env = k6_env(
            urls[proxy],
            sentences,
            RECORD_MODEL="1",
            P99_MS="600000",  # not a latency test
            RAMP="2s",
            HOLD="10m",
            DOWN="1s",
            DURATION="10m",
            VUS=vus,
        )
        outputs[proxy] = (name, workdir / f"{name}.csv.gz")
        logs.append((workdir / f"{name}-k6.log").open("w"))
        command = k6_command(f"{name}.js", outputs[proxy][1], workdir / f"{name}-summary.json")
        runs.append(
            subprocess.Popen(
                command, cwd=SCRIPTS, env=env, stdout=subprocess.DEVNULL, stderr=logs[-1]
            )
        )
    observer = Observer(urls)
    thread = threading.Thread(target=observer.run, daemon=True)
    thread.start()
    try:
        time.sleep(5)  # load running before anything changes
        yield observer, outputs
    finally:
        observer.stopping.set()
        thread.join(60)
        for run in runs:
            run.send_signal(signal.SIGINT)  # k6 stops gracefully and writes its output
        for run in runs:
            run.wait(120)
        for log in logs:
            log.close()
        assert not thread.is_alive(), "the observer never finished"
        # interrupted (SIGINT) k6 exits 0 or 105; anything else: it failed to run
        assert {run.returncode for run in runs} <= {0, 105}, [run.returncode for run in runs]


def flip_flops(answers: list[Answer], old: str, new: str) -> list[Answer]:
    """Old-model answers to requests sent after a new-model answer arrived."""
    first_new = min((a.received for a in answers if a.fingerprint == new), default=math.inf)
    return [a for a in answers if a.fingerprint == old and a.sent > first_new]


def by_proxy(answers: list[Answer]) -> dict[str, list[Answer]]:
    return {p: [a for a in answers if a.proxy == p] for p in sorted({a.proxy for a in answers})}


def rollout_figures(answers: list[Answer], old: str, new: str) -> dict[str, object]:
    """What the rollout looked like from the clients (no verdicts)."""
    first_new = min(a.received for a in answers if a.fingerprint == new)
    last_old = max(a.received for a in answers if a.fingerprint == old)
    return {
        "requests": len(answers),
        "failed": sum(a.status != 200 for a in answers),
        "old_model_answers": sum(a.fingerprint == old for a in answers),
        "new_model_answers": sum(a.fingerprint == new for a in answers),
        "requests_by_proxy": {p: len(theirs) for p, theirs in by_proxy(answers).items()},
        "first_new_to_last_old_seconds": round(last_old - first_new, 3),
        # across proxies: how long after one proxy's first new answer another sent an old one
        "proxies_apart_seconds": round(
            max((a.sent - first_new for a in flip_flops(answers, old, new)), default=0.0), 3
        ),
    }


@pytest.mark.parametrize("balancing", sorted(BALANCING))
def test_rolling_update_and_scale_down_under_load(
    balancing: str, tmp_path: Path, logs_dir: Path, tiny_checkpoint: Path, redis_server: int
) -> None:
    manifest = next(
        d for d in of_kind(render("dev"), "Deployment") if d["metadata"]["name"] == "sst2-triton"
    )
    lifecycle = Lifecycle.from_deployment(manifest)
    # fp32: scores independent of batch-mates, so each answer can be checked exactly
    config = set_parameter((MODEL_SOURCE / "config.pbtxt").read_text(), "engine", "torch-fp32")
    new_checkpoint = swapped_labels_checkpoint(tiny_checkpoint, tmp_path / "new")
    balancer = Balancer(tmp_path, logs_dir, lifecycle.readiness_path, balancing).start()
    deployment = Deployment(balancer, lifecycle, tmp_path, logs_dir, config)
    proxies: dict[str, ServerProcess] = {}
    database = 5 + sorted(BALANCING).index(balancing)  # a cache of its own: misses to roll under
    try:
        for _ in range(REPLICAS):
            deployment.start_replica(tiny_checkpoint, "old")
        for name in PROXIES:
            proxies[name] = launch_proxy(
                logs_dir,
                triton_url=balancer.url,
                redis_url=f"redis://127.0.0.1:{redis_server}/{database}",
                model_refresh_seconds=str(REFRESH_SECONDS),
            )
        urls = {name: proxy.url for name, proxy in proxies.items()}
        first = predict(urls[PROXIES[0]], FIXED)  # the original's texts, cached for the old model
        old = first.headers["X-Model-Fingerprint"]
        old_scores = [[p["score"] for p in entry] for entry in first.json()["predictions"]]

        started = time.time()
        with load(urls, tmp_path) as (observer, k6_outputs):
            deployment.roll(new_checkpoint, "new")
            rolled = time.time()
            time.sleep(3)
            deployment.stop_replica(next(iter(deployment.replicas)))  # scale down by one
            time.sleep(3)
        from_k6 = [a for p, (_, out) in k6_outputs.items() for a in k6_answers(out, p)]
        answers = observer.answers + from_k6
        new = next(a.fingerprint for a in answers if a.fingerprint != old)

        failed = [a for a in answers if a.status != 200]
        explained = [a for a in failed if a.error] + [a for a in failed if not a.error]
        assert not failed, f"{len(failed)} failed requests, first: {explained[:3]}"
        assert {a.fingerprint for a in answers} <= {old, new}
        for proxy, theirs in by_proxy(answers).items():  # no proxy flips back
            late = flip_flops(theirs, old, new)
            assert not late, f"{proxy}: {len(late)} old answers after a new one: {late[:3]}"
        figures = rollout_figures(answers, old, new)
        apart = figures["proxies_apart_seconds"]
        assert isinstance(apart, float) and apart <= REFRESH_SECONDS + 1.0, figures
        for answer in observer.answers:
            for text, row in zip(answer.texts, answer.scores, strict=True):
                if text in FIXED:  # the new model's scores are the old ones reversed
                    expected = old_scores[FIXED.index(text)]
                    if answer.fingerprint == new:
                        expected = expected[::-1]
                    assert row == pytest.approx(expected, abs=1e-5), (answer, text)
        # the scale-down ran under load too (none of it failed: asserted above)
        during_scale_down = [a for a in answers if a.sent > rolled]
        assert len(during_scale_down) >= 20, len(during_scale_down)
        k6_requests = {name: check_k6(tmp_path, name) for name, _ in k6_outputs.values()}
        counts = proxy_counts(list(urls.values()))
        assert counts["refused"] <= IN_FLIGHT, counts
        if balancing == "connection":
            assert counts["declined"] <= DECLINED_AT_MOST, counts
        figures |= {
            # old-release answers the proxies refused and had computed again,
            # and calls old replicas declined before computing
            "answers_refused": counts["refused"],
            "calls_declined": counts["declined"],
            "rollout_seconds": round(rolled - started - 5, 1),
            "k6_requests": k6_requests,
            "k6_model_answers": len(from_k6),
            "observer_requests": len(observer.answers),
            "events": [f"{t - started:6.1f}s {event}" for t, event in deployment.events],
        }
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"rollout-{balancing}.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures, indent=2))
    finally:
        for proxy in proxies.values():
            proxy.stop()
        deployment.stop()
        balancer.stop()
