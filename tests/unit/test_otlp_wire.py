"""cache_proxy.otlp_wire writes the very message the SDK's encoder builds:
both are parsed and compared, for SDK spans of every shape and for the
proxy's lean spans."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter as sdk_exporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from cache_proxy.otlp_wire import Encoder, SpanExporter
from cache_proxy.tracing import Tracing, open_tracer, step

INT64 = st.integers(-(2**63), 2**63 - 1)
SCALAR = st.one_of(st.booleans(), INT64, st.floats(allow_nan=False), st.text(max_size=20))
VALUE = st.one_of(
    SCALAR,
    st.lists(st.booleans(), max_size=3).map(tuple),
    st.lists(INT64, max_size=3),
    st.lists(st.text(max_size=5), max_size=3),
)
ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=10), VALUE, max_size=4)


def same_message(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(Encoder().request(spans))
    assert ours == encode_spans(spans)


def recorded(
    resource: Resource, record: Any, limits: SpanLimits | None = None
) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, shutdown_on_exit=False, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    record(provider)
    return list(exporter.get_finished_spans())


@settings(max_examples=60, deadline=None)
@given(
    span_attributes=ATTRIBUTES,
    event_attributes=ATTRIBUTES,
    kind=st.sampled_from(SpanKind),
    status=st.sampled_from([StatusCode.UNSET, StatusCode.OK, StatusCode.ERROR]),
    description=st.text(max_size=10),
    remote=st.booleans(),
    name=st.text(max_size=15),
)
def test_any_sdk_span_is_written_as_the_sdk_encodes_it(
    span_attributes: dict[str, Any],
    event_attributes: dict[str, Any],
    kind: SpanKind,
    status: StatusCode,
    description: str,
    remote: bool,
    name: str,
) -> None:
    caller = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        remote,
        TraceFlags(TraceFlags.SAMPLED),
        TraceState([("vendor", "value"), ("other", "x")]),
    )
    linked = SpanContext(5, 6, True, TraceFlags(TraceFlags.SAMPLED))
    local = SpanContext(7, 8, False, TraceFlags(TraceFlags.SAMPLED))

    def record(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("scope-a", "1.2")
        parent = trace.set_span_in_context(trace.NonRecordingSpan(caller))
        with tracer.start_as_current_span(
            name,
            parent,
            kind,
            span_attributes,
            links=[Link(linked, {"why": "batch"}), Link(local, event_attributes)],
        ) as span:
            span.add_event("event", event_attributes)
            span.add_event("bare")
            with provider.get_tracer("scope-b").start_as_current_span("child") as child:
                child.set_status(Status(status, description or None))
            span.record_exception(ValueError("bad"))

    first = recorded(Resource.create({"service.name": "a", "n": 1}), record)
    second = recorded(Resource({"service.name": "b"}, "https://schema"), record)
    # equal to the first's but another object, and limits that drop (the dropped counts)
    limits = SpanLimits(
        max_span_attributes=1, max_events=1, max_links=1, max_event_attributes=1,
        max_link_attributes=1,
    )  # fmt: skip
    third = recorded(Resource.create({"service.name": "a", "n": 1}), record, limits)
    same_message(first + second + third + first[:1])


def test_values_the_sdk_would_clean_are_written_as_the_sdk_encodes_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Lean spans take attributes as given: bytes, mappings, floats in lists;
    an int beyond int64 is left out (and logged), as the SDK's encoder does."""
    context = SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED))
    values: dict[str, Any] = {
        "bytes": b"\x00\xff",
        "map": {"a": 1, "b": [1.5, -2.0], "c": {"d": "e"}},
        "floats": [0.0, 1.5, -3.25],
        "huge": 2**70,
        "last": -1,
    }
    spans = [
        ReadableSpan(
            "raw",
            context,
            resource=Resource.create({}),
            attributes=values,
            events=[Event("e", values, 5)],
            start_time=1,
            end_time=2,
        )
    ]
    with caplog.at_level(logging.ERROR, logger="cache_proxy.otlp_wire"):
        ours = ExportTraceServiceRequest.FromString(Encoder().request(spans))
    assert ours == encode_spans(spans)
    written = ours.resource_spans[0].scope_spans[0].spans[0]
    assert [kv.key for kv in written.attributes] == ["bytes", "map", "floats", "last"]
    logged = [r for r in caplog.records if r.name == "cache_proxy.otlp_wire"]
    assert ["huge" in r.getMessage() for r in logged] == [True, True]  # the span's, the event's


def test_equal_values_of_other_types_are_each_written_as_their_own() -> None:
    """Encoded attributes are kept for reuse: True, 1 and 1.0 are equal in
    Python, and each must still be written as its own type."""
    context = SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED))
    resource = Resource.create({})
    values: list[Any] = [1, True, 1.0, "1", 1, 0, False, 0.0]
    spans = [
        ReadableSpan("s", context, resource=resource, attributes={"v": v}, start_time=1, end_time=2)
        for v in values
    ]
    for one in spans:  # one request each, as batch after batch
        same_message([one])
    same_message(spans)


def test_the_proxys_lean_spans_are_written_as_the_sdk_encodes_them() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter), {})

    class Request:
        def __init__(self) -> None:
            self.method = "POST"
            self.headers = {
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            }

    with tracing.request_span(Request(), "/predict") as request:  # type: ignore[arg-type]
        request.set_attribute("http.response.status_code", 200)
        with step("cache lookup", texts=3) as lookup:
            lookup.set_attribute("hits", 0)
        try:
            with step("triton infer", current=True, texts=3, cost=40):
                raise TimeoutError("no answer")
        except TimeoutError:
            pass
    spans = list(exporter.get_finished_spans())
    assert len(spans) == 3
    same_message(spans)


def test_the_exporter_sends_what_the_encoder_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = recorded(Resource.create({}), lambda p: p.get_tracer("t").start_span("s").end())
    expected = encode_spans(spans)

    def sdk_encoder(spans: object) -> None:
        raise AssertionError("the SDK's encoder ran")

    monkeypatch.setattr(sdk_exporter, "encode_spans", sdk_encoder)
    exporter = SpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    posted: list[bytes] = []
    monkeypatch.setattr(
        exporter, "_export", lambda data: posted.append(data) or SimpleNamespace(ok=True)
    )
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert [ExportTraceServiceRequest.FromString(data) for data in posted] == [expected]


def test_the_proxy_exports_through_this_encoder() -> None:
    async def exporter() -> object:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
        async with open_tracer(env) as tracing:
            assert tracing.recorder is not None
            processor = tracing.recorder.processor
            assert isinstance(processor, BatchSpanProcessor)
            return processor.span_exporter

    assert isinstance(asyncio.run(exporter()), SpanExporter)


def one_span_each(*resources: Resource) -> list[ReadableSpan]:
    """A span recorded under each of `resources`, in order."""
    return [
        span
        for resource in resources
        for span in recorded(resource, lambda p: p.get_tracer("t").start_span("s").end())
    ]


def test_one_encoder_groups_batch_after_batch_by_resource() -> None:
    """The exporter keeps one Encoder: resources seen in earlier batches, equal
    ones in one batch, or more than it keeps, still group as the SDK does."""
    encoder = Encoder()
    for batch in range(80):
        resources = [Resource.create({"batch": batch % 7, "n": n}) for n in range(2)]
        spans = one_span_each(*resources, Resource.create({"batch": batch % 7, "n": 0}))
        ours = ExportTraceServiceRequest.FromString(encoder.request(spans))
        assert ours == encode_spans(spans), batch


def test_resources_group_by_hash_and_equality_each_under_its_own_object() -> None:
    """As the SDK's dict: equal resources whose hashes differ (1 and True) are
    two groups; an equal resource with its attributes in another order, sent
    later, is written in its own order."""
    encoder = Encoder()
    for spans in (
        one_span_each(Resource({"a": 1}), Resource({"a": True})),
        one_span_each(Resource({"a": 1, "b": 2})),
        one_span_each(Resource({"b": 2, "a": 1})),
    ):
        expected = encode_spans(spans)
        assert ExportTraceServiceRequest.FromString(encoder.request(spans)) == expected
    hashes_differ = one_span_each(Resource({"a": 1}), Resource({"a": True}))
    assert len(encode_spans(hashes_differ).resource_spans) == 2
