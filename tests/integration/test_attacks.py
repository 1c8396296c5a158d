"""One hostile client must not take the service away from honest ones.

Each attack of perf.attacks runs against a proxy with default settings while
the honest client sends one never-seen sentence every 200 ms: every honest
request is answered 200 while the attack runs, the attacker never gets a 5xx,
and afterwards the service is ready and the model answers as before.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

from perf import procstat
from perf.attacks import ATTACKS, HONEST_PERIOD_SECONDS, Target, raw_exchange, raw_post, run
from tests.http import request
from tests.stack import ProxyFactory, Triton, launch_proxy

pytestmark = pytest.mark.integration

ATTACK_SECONDS = 6.0
PROBE = ["a probe sentence the attack never sends", "and a second , sadder one"]


def model_scores(triton: Triton) -> np.ndarray:
    """Scores straight from Triton (no cache in between)."""
    client = InferenceServerClient(triton.http_url)
    data = np.array([[t.encode()] for t in PROBE], dtype=np.object_)
    text = InferInput("TEXT", list(data.shape), "BYTES")
    text.set_data_from_numpy(data)
    result = client.infer(
        "distilbert_sst2", [text], outputs=[InferRequestedOutput("PROBABILITIES")]
    )
    return result.as_numpy("PROBABILITIES")


def server_errors(proxy: str) -> float:
    metrics = request("GET", f"{proxy}/metrics").body.decode()
    return sum(
        float(v) for v in re.findall(r'proxy_requests_total\{.*status="5\d\d"\} (\S+)', metrics)
    )


# Attacks whose clients leave or are cut off: 0 (no answer) is as meant.
NO_ANSWER_EXPECTED = {"slow-connections", "hang-up-flood"}
PROXY_LIMIT_MIB = 256  # k8s/base/proxy-deployment.yaml's memory limit


class PeakMemory:
    """The largest resident size of each process tree, sampled every 50 ms."""

    def __init__(self, **pids: int) -> None:
        self.pids, self.peak = pids, dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], procstat.resident_mib(pid))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_honest_client_is_served_during_attack(
    attack: str, logs_dir: Path, triton: Triton, redis_server: int
) -> None:
    # slow-connections: a low connection cap, so that the attack reaches it
    cap = {"max_connections": "100"} if attack == "slow-connections" else {}
    server = launch_proxy(logs_dir, triton_url=triton.http_url,
                          redis_url=f"redis://127.0.0.1:{redis_server}/0", **cap)  # fmt: skip
    try:
        proxy = server.url
        before = model_scores(triton)
        pids = {"proxy": server.process.pid, "triton": triton.server.process.pid}  # type: ignore[union-attr]
        stub_before = procstat.resident_mib(pids["triton"])
        with PeakMemory(**pids) as memory:
            honest, hostile = run(proxy, attack, ATTACK_SECONDS)

        # every honest request answered, at a pace near its schedule: a client
        # slowed from 20 ms to 1.2 s a request gets 5 answers, not 30 (the
        # memory flood's 40 threads slow it to ~0.3 s on 2 cores: about 20).
        # Latency figures belong to the bench (perf/compare/under_attack.py).
        expected = ATTACK_SECONDS / HONEST_PERIOD_SECONDS
        assert len(honest.statuses) >= 0.4 * expected, (len(honest.statuses), honest.latencies)
        assert set(honest.statuses) == {200}, honest.statuses
        # the attacker got answers (or, for the attacks that leave, none), never a 5xx
        assert hostile.statuses, "the attack ran"
        assert max(hostile.statuses) < 500, sorted(set(hostile.statuses))
        if attack == "slow-connections":  # each entry: a connection the server closed
            assert set(hostile.statuses) == {0}, sorted(set(hostile.statuses))
        elif attack not in NO_ANSWER_EXPECTED:  # hang-up-flood: 0 if it left first
            assert min(hostile.statuses) >= 200, sorted(set(hostile.statuses))
        assert server_errors(proxy) == 0
        ready = request("GET", f"{proxy}/health/ready")
        assert (ready.status, ready.json()["status"]) == (200, "ready")
        np.testing.assert_array_equal(model_scores(triton), before)
        # at its peak: the proxy within its pod's limit (the gzip bombs and
        # memory flood inflate there), Triton + stub not grown past 200 MiB
        assert memory.peak["proxy"] < PROXY_LIMIT_MIB, memory.peak
        grown = memory.peak["triton"] - stub_before
        assert grown < 200, f"tritonserver and the stub grew by {grown:.0f} MiB at the peak"
    finally:
        server.stop()


def test_the_attack_statuses_are_the_documented_4xx(start_proxy: ProxyFactory) -> None:
    proxy = start_proxy()
    _, hostile = run(proxy, "malformed", 2.0)
    assert set(hostile.statuses) <= {400, 413, 415, 422}, sorted(set(hostile.statuses))
    _, bombs = run(proxy, "bombs", 2.0)
    assert set(bombs.statuses) == {413}


def test_idle_slow_and_stalled_connections_are_closed(start_proxy: ProxyFactory) -> None:
    proxy = start_proxy(keepalive_timeout_seconds="1", body_timeout_seconds="1")
    target = Target.of(proxy)
    idle, slow_headers, slow_body = (target.socket(timeout=5) for _ in range(3))
    slow_headers.sendall(b"POST /predict HTTP/1.1\r\nHost: a\r\n")
    slow_body.sendall(raw_post(b'{"text": ', length=100))
    assert idle.recv(100) == b""  # closed by the server, not by our timeout
    assert slow_headers.recv(100) == b""
    answer = slow_body.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"error_type": "request_timeout"' in answer
    for sock in (idle, slow_headers, slow_body):
        sock.close()


def test_at_the_connection_cap_busy_connections_are_kept(start_proxy: ProxyFactory) -> None:
    proxy = start_proxy(max_connections="3", body_timeout_seconds="5")
    target = Target.of(proxy)
    busy = [target.socket(timeout=5) for _ in range(3)]
    for sock in busy:  # each one is in a handler, waiting for the rest of its body
        sock.sendall(raw_post(b"{", length=100))
    time.sleep(0.5)
    refused = raw_exchange(target, raw_post(b'{"text": ["hi"]}'))
    assert refused == 429
    for sock in busy:
        sock.close()
    time.sleep(0.5)
    assert raw_exchange(target, raw_post(b'{"text": ["hi"]}')) == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /predict HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /predict HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\nContent-Length: 2\r\n\r\n{}",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["bad chunk size", "header line over 8 KiB", "not HTTP"],
)
def test_http_framing_errors_are_json_4xx(proxy_url: str, raw: bytes) -> None:
    with Target.of(proxy_url).socket(timeout=5) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400", answer
    assert json.loads(body)["error_type"] == "malformed_request"


def test_memory_a_burst_freed_is_given_back(
    logs_dir: Path, triton: Triton, redis_server: int
) -> None:
    # Long texts leave glibc's heap full of free holes: without the trim
    # (cache_proxy/memory.py) the proxy stayed ~150 MiB above where it began,
    # the next attack adding to it, up to its pod's limit.
    server = launch_proxy(logs_dir, triton_url=triton.http_url,
                          redis_url=f"redis://127.0.0.1:{redis_server}/0")  # fmt: skip
    try:
        pid = server.process.pid  # type: ignore[union-attr]
        assert (
            request("POST", f"{server.url}/predict", json.dumps({"text": PROBE}).encode()).status
            == 200
        )
        before = procstat.resident_mib(pid)
        run(server.url, "long-texts", ATTACK_SECONDS)
        grown = procstat.resident_mib(pid) - before
        deadline = time.monotonic() + 10  # a trim a second, or one after a back-off of 5 s
        while (left := procstat.resident_mib(pid) - before) > 48 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert left <= 48, f"grew by {grown:.0f} MiB in the attack, {left:.0f} MiB still held"
        metrics = request("GET", f"{server.url}/metrics").body.decode()
        assert float(re.findall(r"^proxy_memory_trims_total (\S+)", metrics, re.M)[0]) >= 1
    finally:
        server.stop()
