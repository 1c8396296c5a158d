"""OpenTelemetry traces of the proxy's requests, one trace across the proxy and Triton.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set. The
SDK then reads its own standard variables: OTEL_SERVICE_NAME (default here:
cache-proxy), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default:
parentbased_always_on), OTEL_BSP_* and OTEL_EXPORTER_OTLP_* (OTLP/HTTP,
protobuf). Spans go out in batches from a background thread.

A request's span is the parent of its steps' spans (body, cache lookup,
single-flight wait, admission wait, Triton call, cache write). A sampled
Triton call carries the W3C `traceparent` of its span; Triton traces every
request that carries one (whatever its sampled flag), so an unsampled call
carries none.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE = "cache-proxy"
TRACER_NAME = "cache_proxy"
TRACE_HEADER = "X-Trace-Id"  # a sampled request's trace id, on its answer
NO_TRACER = trace.NoOpTracer()


def tracing_enabled(env: Mapping[str, str]) -> bool:
    """An OTLP endpoint is set: traces are exported there."""
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


def tracer_provider(processor: SpanProcessor, env: Mapping[str, str]) -> TracerProvider:
    """A provider handing spans to `processor`; the sampler comes from OTEL_TRACES_SAMPLER."""
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: SERVICE}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    return provider


@contextlib.asynccontextmanager
async def open_tracer(env: Mapping[str, str] | None = None) -> AsyncIterator[trace.Tracer]:
    """The proxy's tracer while the app runs (a no-op one when tracing is
    off); at shutdown the spans still queued are exported."""
    env = os.environ if env is None else env
    if not tracing_enabled(env):
        yield NO_TRACER
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = tracer_provider(BatchSpanProcessor(OTLPSpanExporter()), env)
    try:
        yield provider.get_tracer(TRACER_NAME)
    finally:
        await asyncio.to_thread(provider.shutdown)


def step(
    tracer: trace.Tracer, name: str, **attributes: str | int
) -> AbstractContextManager[trace.Span]:
    """A span for one step of the current request (a child of its span)."""
    return tracer.start_as_current_span(name, attributes=attributes)


def sampled_context_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span if it is sampled, else none."""
    if not trace.get_current_span().get_span_context().trace_flags.sampled:
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def trace_id(span: trace.Span) -> str | None:
    """The span's trace id in hex if it is sampled (exported), else None."""
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id) if context.trace_flags.sampled else None


def server_span(
    tracer: trace.Tracer, request: web.Request, route: str
) -> AbstractContextManager[trace.Span]:
    """The request's span (named by its route template), continuing the
    caller's trace if it sent a `traceparent`."""
    return tracer.start_as_current_span(
        f"{request.method} {route}",
        context=propagate.extract(request.headers),
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route},
    )
