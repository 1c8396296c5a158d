"""Tracing's pure parts: Triton's trace flags, the receiver's decoding of
both OTLP encodings, and the model's parent contexts."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from spans import parent_contexts

from devstack.otlp import parse_request, spans_of, tree
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


def test_the_receiver_refuses_what_is_not_an_export() -> None:
    with pytest.raises(ValueError, match="not an OTLP trace export"):
        parse_request(b"{not json", "application/json")
    assert isinstance(parse_request(b"", "application/x-protobuf"), ExportTraceServiceRequest)


def test_the_model_traces_the_requests_triton_traces() -> None:
    traced = json.dumps({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-343000dc5add23d7-01"})
    assert parent_contexts([None, traced, ""]) == [json.loads(traced)]
