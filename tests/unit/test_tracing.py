"""Tracing's pure parts: Triton's trace flags, the receiver's decoding of
both OTLP encodings, the model's parent contexts, and the proxy's lean spans
(what the SDK's exporter and a receiver get from them)."""

from __future__ import annotations

import asyncio
import contextvars
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import StatusCode
from spans import parent_contexts

from cache_proxy.tracing import NO_PARENT, Tracing, dropped_roots, step
from devstack import otlp
from devstack.otlp import Receiver, parse_request, spans_of, tree
from tritonserve import trace_flags, traces_url

TRITON_JSON = {  # what tritonserver 2.51's exporter sends (OTLP/JSON: ids in hex)
    "resourceSpans": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "triton-inference-server"}}
                ]
            },
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "0af7651916cd43dd8448eb211c80319c",
                            "spanId": "ad7947c9b7189ab8",
                            "parentSpanId": "b7ad6b7169203331",
                            "name": "InferRequest",
                            "kind": 2,
                            "startTimeUnixNano": "1000000",
                            "endTimeUnixNano": "3000000",
                            "events": [{"name": "HTTP_RECV_START", "timeUnixNano": "1000000"}],
                        }
                    ]
                }
            ],
        }
    ]
}


def test_triton_traces_only_with_an_endpoint_and_only_propagated_requests() -> None:
    assert trace_flags({}) == []
    flags = trace_flags({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    settings = flags[1::2]
    assert set(flags[::2]) == {"--trace-config"}
    assert "mode=opentelemetry" in settings and "rate=0" in settings
    assert "opentelemetry,url=http://collector:4318/v1/traces" in settings


def test_a_traces_endpoint_wins_over_the_base_endpoint() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/custom",
    }
    assert traces_url(env) == "http://traces:9999/custom"


def test_the_receiver_reads_tritons_json_with_hex_ids() -> None:
    message = parse_request(json.dumps(TRITON_JSON).encode(), "application/json")
    [span] = spans_of(message)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "ad7947c9b7189ab8",
        "b7ad6b7169203331",
    )
    assert (span.service, span.events, span.milliseconds) == (
        "triton-inference-server",
        ["HTTP_RECV_START"],
        2.0,
    )


def test_the_receiver_reads_the_python_sdks_protobuf() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child"):
        pass
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    spans = spans_of(parse_request(body, "application/x-protobuf"))
    parent = next(s for s in spans if s.name == "parent")
    child = next(s for s in spans if s.name == "child")
    assert child.parent_span_id == parent.span_id and parent.parent_span_id == ""
    assert tree(spans).splitlines()[1].startswith("  child")


def test_the_receiver_keeps_every_span_of_the_exports_it_holds_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp, "MAX_UNREAD", 3)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for n in range(7):
        with provider.get_tracer("test").start_as_current_span(f"span {n}"):
            pass
    exports = [encode_spans([span]).SerializeToString() for span in exporter.get_finished_spans()]
    lazy, eager = Receiver(), Receiver(tmp_path / "spans.jsonl")
    for body in exports:
        lazy.add(parse_request(body, "application/x-protobuf"))
        eager.add(parse_request(body, "application/x-protobuf"))
    assert len(lazy.unread) < 3 and len(eager.unread) == 0
    assert (
        [s.name for s in lazy.spans]
        == [f"span {n}" for n in range(7)]
        == [s.name for s in eager.spans]
    )
    assert len((tmp_path / "spans.jsonl").read_text().splitlines()) == 7


def test_the_receiver_refuses_what_is_not_an_export() -> None:
    with pytest.raises(ValueError, match="not an OTLP trace export"):
        parse_request(b"{not json", "application/json")
    assert isinstance(parse_request(b"", "application/x-protobuf"), ExportTraceServiceRequest)


def test_the_model_traces_the_requests_triton_traces() -> None:
    traced = json.dumps({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-343000dc5add23d7-01"})
    assert parent_contexts([None, traced, ""]) == [json.loads(traced)]


class Request:  # what Tracing.request_span reads of an aiohttp request
    def __init__(self) -> None:
        self.method, self.headers = "POST", {}


def test_a_sampled_requests_spans_reach_a_receiver_as_one_tree() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter), {})
    with tracing.request_span(Request(), "/predict") as request:  # type: ignore[arg-type]
        with step("cache lookup", texts=2) as lookup:
            lookup.set_attribute("hits", 1)
        with step("triton infer", current=True, texts=1), step("leaf"):
            pass
        assert trace.get_current_span() is request  # a current step's span is current no more
        request.set_attribute("http.response.status_code", 200)
        later = contextvars.copy_context()  # as a task detached from the request
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert not later.run(lambda: step("cache write").__enter__().is_recording())  # ended
    finished = exporter.get_finished_spans()
    body = encode_spans(finished).SerializeToString()
    spans = {s.name: s for s in spans_of(parse_request(body, "application/x-protobuf"))}
    root = spans["POST /predict"]
    assert root.parent_span_id == "" and root.service == "cache-proxy"
    assert root.attributes == {
        "http.request.method": "POST",
        "http.route": "/predict",
        "http.response.status_code": 200,
    }
    assert spans["cache lookup"].parent_span_id == root.span_id
    assert spans["cache lookup"].attributes == {"texts": 2, "hits": 1}
    assert spans["leaf"].parent_span_id == spans["triton infer"].span_id  # current: a parent
    assert len({s.trace_id for s in spans.values()}) == 1
    assert all(0 <= s.milliseconds < 1000 for s in spans.values())
    assert [s.instrumentation_scope.name for s in finished] == ["cache_proxy"] * 4


def test_a_failed_step_is_marked_failed_with_its_exception_and_so_is_its_request() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter), {})

    def fail() -> None:
        with tracing.request_span(Request(), "/predict"), step("cache lookup"):  # type: ignore[arg-type]
            raise KeyError("gone")

    with pytest.raises(KeyError):
        fail()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("cache lookup", "POST /predict"):
        assert spans[name].status.status_code is StatusCode.ERROR
        [event] = spans[name].events
        assert event.name == "exception" and event.attributes is not None
        assert event.attributes["exception.type"] == "KeyError"
        assert "raise KeyError" in str(event.attributes["exception.stacktrace"])


def test_lean_spans_keep_the_sdks_rules() -> None:
    """Exception types named as the SDK names them; a cancelled request is no
    failure; an ended span takes no more writes (the exporter may be reading it)."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter), {})
    spans_seen: list[trace.Span] = []

    def cancelled() -> None:
        with tracing.request_span(Request(), "/predict") as request:  # type: ignore[arg-type]
            spans_seen.append(request)
            with step("cache lookup") as lookup:
                lookup.record_exception(json.JSONDecodeError("bad", "{", 0))
                lookup.set_status(StatusCode.ERROR)
                lookup.set_status(StatusCode.UNSET)
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        cancelled()
    [request] = spans_seen
    request.set_attribute("late", 1)
    request.add_event("late")
    request.set_status(StatusCode.ERROR)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    [event] = spans["cache lookup"].events
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "json.decoder.JSONDecodeError"
    assert spans["cache lookup"].status.status_code is StatusCode.ERROR
    finished = spans["POST /predict"]
    assert finished.status.status_code is StatusCode.UNSET and not finished.events
    assert "late" not in finished.attributes


def test_outside_a_sampled_request_a_step_has_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # the SDK reads its sampler there
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter), {})
    with step("cache lookup") as alone:
        assert not alone.is_recording()
    with tracing.request_span(Request(), "/predict") as request:  # type: ignore[arg-type]
        assert not request.is_recording()
        with step("cache lookup") as lookup:
            assert not lookup.is_recording()
    assert exporter.get_finished_spans() == ()


class EveryOther(TraceIdRatioBased):
    """A sampler of the user's own: its decisions are not known in advance."""

    def should_sample(self, *args: object, **kwargs: object) -> SamplingResult:
        trace_id = args[1]
        assert isinstance(trace_id, int)
        return SamplingResult(Decision.RECORD_AND_SAMPLE if trace_id % 2 else Decision.DROP)


def known_samplers(rate: float) -> list[Sampler]:
    ratio = TraceIdRatioBased(rate)
    return [ratio, ParentBasedTraceIdRatio(rate), ParentBased(ratio), ALWAYS_OFF, ALWAYS_ON]


def same_decision(sampler: Sampler, trace_id: int) -> None:
    decision = sampler.should_sample(NO_PARENT, trace_id, "POST /predict").decision
    assert dropped_roots(sampler)(trace_id) == (decision is Decision.DROP), sampler


@settings(max_examples=100, deadline=None)
@given(trace_id=st.integers(1, 2**128 - 1), rate=st.sampled_from([0.0, 1e-6, 0.1, 0.5, 1.0]))
def test_a_new_trace_is_dropped_by_its_id_as_the_sdks_sampler_drops_it(
    trace_id: int, rate: float
) -> None:
    for sampler in known_samplers(rate):
        same_decision(sampler, trace_id)
    assert not dropped_roots(EveryOther(rate))(trace_id)  # unknown: the sampler is asked
    assert not dropped_roots(ParentBased(EveryOther(rate)))(trace_id)


def test_the_ids_at_a_ratios_bound_are_dropped_as_the_sdk_drops_them() -> None:
    bound = TraceIdRatioBased(0.1).bound
    for low in (bound - 1, bound, bound + 1):
        for high in (0, 1 << 100):
            for sampler in known_samplers(0.1):
                same_decision(sampler, high | low)
