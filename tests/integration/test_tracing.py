"""One trace per request across the proxy, tritonserver and the model, into a
real OTLP/HTTP receiver (devstack.otlp, decoding with opentelemetry-proto)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.launch import start_otlp_receiver, start_triton
from devstack.otlp import Span
from devstack.process import ServerProcess, free_port, port_open, python_module
from tests.http import Reply, predict, request
from tests.stack import Triton, launch_proxy

pytestmark = pytest.mark.integration

PROXY_STEPS = {"body and parse", "cache lookup", "admission wait", "triton infer", "cache write"}
FLUSH = {"OTEL_BSP_SCHEDULE_DELAY": "200"}  # export every 0.2 s, not 5 s: short waits


@dataclass
class Traced:
    receiver: ServerProcess
    triton_url: str
    redis_port: int
    logs: Path

    def spans(self) -> list[Span]:
        return [Span(**raw) for raw in request("GET", f"{self.receiver.url}/spans").json()]

    def proxy(self, **settings: str) -> ServerProcess:
        return launch_proxy(
            self.logs,
            **{
                "triton_url": self.triton_url,
                "redis_url": f"redis://127.0.0.1:{self.redis_port}/0",
                "otel_exporter_otlp_endpoint": self.receiver.url,
                **FLUSH,
                **settings,
            },
        )


@pytest.fixture(scope="module")
def traced(triton: Triton, redis_server: int, logs_dir: Path) -> Iterator[Traced]:
    """A receiver and a tritonserver (the session's model) exporting to it."""
    receiver = start_otlp_receiver(logs_dir)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **FLUSH}
    try:
        server, ports = start_triton(triton.repository, logs_dir, env=env)
    except BaseException:
        receiver.stop()
        raise
    yield Traced(receiver, f"127.0.0.1:{ports.http}", redis_server, logs_dir)
    server.stop()
    receiver.stop()


def wait_for(traced: Traced, done: Callable[[list[Span]], bool], seconds: float = 20) -> list[Span]:
    deadline = time.monotonic() + seconds
    while True:
        spans = traced.spans()
        if done(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def of_trace(spans: list[Span], trace_id: str) -> list[Span]:
    return [span for span in spans if span.trace_id == trace_id]


def named(spans: list[Span], name: str) -> Span:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def has_compute(trace_id: str) -> Callable[[list[Span]], bool]:
    def done(spans: list[Span]) -> bool:
        names = {s.name for s in of_trace(spans, trace_id)}
        return {"compute", "forward", "cache write", "POST /predict"} <= names

    return done


def sentence() -> str:
    return f"a never seen sentence {uuid.uuid4()}"


def test_a_miss_is_one_trace_through_proxy_triton_and_model(traced: Traced) -> None:
    proxy = traced.proxy(otel_service_name="cache-proxy-test")
    try:
        text = sentence()
        miss = predict(proxy.url, [text])
        hit = predict(proxy.url, [text])
        later = predict(proxy.url, [sentence()])
        for reply, cache in ((miss, "miss"), (hit, "hit"), (later, "miss")):
            assert reply.status == 200 and reply.headers["X-Cache"] == cache
        ids = [reply.headers["X-Trace-Id"] for reply in (miss, hit, later)]
        assert len(set(ids)) == 3
        # Triton exports in order: once the later miss's spans are in, the hit's would be
        spans = wait_for(traced, has_compute(ids[2]))
        access_log = proxy.log_path.read_text()
    finally:
        proxy.stop()

    trace = of_trace(spans, ids[0])
    request_span = named(trace, "POST /predict")
    assert request_span.service == "cache-proxy-test" and request_span.parent_span_id == ""
    proxy_steps = [s for s in trace if s.name in PROXY_STEPS]
    assert {s.name for s in proxy_steps} == PROXY_STEPS
    assert all(s.parent_span_id == request_span.span_id for s in proxy_steps)
    call = named(trace, "triton infer")
    infer = named(trace, "InferRequest")  # tritonserver's span of the HTTP request
    assert infer.service == "triton-inference-server" and infer.parent_span_id == call.span_id
    model = named(trace, "distilbert_sst2")
    assert model.parent_span_id == infer.span_id and "QUEUE_START" in model.events
    for step in ("compute", "tokenize", "forward"):  # Triton's, then the model's own
        assert named(trace, step).parent_span_id == model.span_id, step
    assert named(trace, "forward").attributes["texts"] == 1

    hit_trace = of_trace(spans, ids[1])
    assert {s.service for s in hit_trace} == {"cache-proxy-test"}
    assert "triton infer" not in {s.name for s in hit_trace}
    assert named(hit_trace, "cache lookup").attributes["hits"] == 1
    assert f"trace={ids[0]}" in access_log and f"trace={ids[1]}" in access_log


def test_sampling_at_a_ratio_samples_that_share_and_only_those_reach_triton(
    traced: Traced,
) -> None:
    sent, ratio = 120, 0.25
    proxy = traced.proxy(
        otel_service_name="cache-proxy-sampled",
        otel_traces_sampler="traceidratio",
        otel_traces_sampler_arg=str(ratio),
    )
    started = time.time_ns()
    try:
        replies: list[Reply] = [predict(proxy.url, [sentence()]) for _ in range(sent)]
    finally:
        proxy.stop()  # exports what is still queued
    assert all(reply.status == 200 for reply in replies)
    sampled = {r.headers["X-Trace-Id"] for r in replies if "X-Trace-Id" in r.headers}
    # binomial(120, 0.25): mean 30, sd 4.7; this band fails 1 run in 10,000
    assert 12 <= len(sampled) <= 48, len(sampled)

    def all_in(spans: list[Span]) -> bool:
        return sampled <= {s.trace_id for s in spans if s.name == "compute"}

    spans = [s for s in wait_for(traced, all_in) if s.start_ns >= started]
    roots = {s.trace_id for s in spans if s.name == "POST /predict"}
    assert roots == sampled
    # Triton traces every call that carries a traceparent: only sampled ones carry one
    assert {s.trace_id for s in spans if s.name == "InferRequest"} == sampled


def test_a_collector_that_fails_does_not_hold_the_proxys_exit(
    traced: Traced, logs_dir: Path
) -> None:
    """A collector answering 5xx makes the exporter retry for about a minute
    (1+2+...+32 s); the proxy still exits within its drain bound."""
    port = free_port()
    failing = ServerProcess(  # answers every POST with 501, which the exporter retries
        f"failing-collector-{port}", python_module("http.server", str(port)), logs_dir
    ).start()
    failing.wait_until(lambda: port_open(port), 10)
    try:
        proxy = traced.proxy(otel_exporter_otlp_endpoint=f"http://127.0.0.1:{port}")
        assert predict(proxy.url, [sentence()]).status == 200
        time.sleep(1.5)  # the first export failed: the exporter now sleeps between retries
        proxy.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert proxy.process is not None
        assert proxy.process.wait(30) == 0
        assert time.monotonic() - signalled < 10  # drain (SHUTDOWN_TIMEOUT 10 s: none in flight)
        assert "spans still queued at exit were dropped" in proxy.log_tail(50)
    finally:
        failing.stop()
