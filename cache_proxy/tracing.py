"""OpenTelemetry traces of the proxy's requests, one trace across the proxy and Triton.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set. The
SDK then reads its own standard variables: OTEL_SERVICE_NAME (default here:
cache-proxy), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default:
parentbased_always_on), OTEL_BSP_* and OTEL_EXPORTER_OTLP_* (OTLP/HTTP,
protobuf). Spans go out in batches from a background thread.

A request's span is the parent of its steps' spans (body, cache lookup,
single-flight wait, admission wait, Triton call, cache write). Sampling is
decided first: an unsampled request gets no span at all. A sampled Triton
call carries the W3C `traceparent` of its span; Triton traces every request
that carries one (whatever its sampled flag), so an unsampled call carries
none. Probes and scrapes (/health, /health/ready, /metrics) are not traced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractContextManager

from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import StatusCode

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE = "cache-proxy"
TRACER_NAME = "cache_proxy"
EXPORT_AT_EXIT_SECONDS = 2.0
log = logging.getLogger(__name__)
TRACE_HEADER = "X-Trace-Id"  # a sampled request's trace id, on its answer
NO_TRACER = trace.NoOpTracer()
SERVER = trace.SpanKind.SERVER


def tracing_enabled(env: Mapping[str, str]) -> bool:
    """An OTLP endpoint is set: traces are exported there."""
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


class PresetTraceIds(RandomIdGenerator):
    """Random ids, except a trace id drawn beforehand to decide sampling
    (`Tracing.request_span`): the span then gets the id it was sampled by."""

    def __init__(self) -> None:
        self.preset: int | None = None

    def generate_trace_id(self) -> int:
        preset, self.preset = self.preset, None
        return super().generate_trace_id() if preset is None else preset


class Tracing:
    """The proxy's tracer, and each request's sampling decided before any span
    exists: an unsampled request costs a random number and a comparison, no
    span (the SDK's own sampler decides, from OTEL_TRACES_SAMPLER)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        """`provider`: from tracer_provider(); None: tracing off."""
        self.provider = provider
        self.tracer: trace.Tracer = NO_TRACER
        self.ids = PresetTraceIds()
        if provider is not None:
            if not isinstance(provider.id_generator, PresetTraceIds):
                raise TypeError("a Tracing provider comes from tracer_provider()")
            self.tracer, self.ids = provider.get_tracer(TRACER_NAME), provider.id_generator

    def request_span(self, request: web.Request, route: str) -> AbstractContextManager[trace.Span]:
        """The request's span (named by its route template), continuing the
        caller's trace if it sent a `traceparent`; none if not sampled."""
        if self.provider is None:
            return contextlib.nullcontext(trace.INVALID_SPAN)
        name = f"{request.method} {route}"
        parent = propagate.extract(request.headers) if "traceparent" in request.headers else None
        caller = trace.get_current_span(parent).get_span_context()
        trace_id = caller.trace_id if caller.is_valid else self.ids.generate_trace_id()
        decision = self.provider.sampler.should_sample(parent, trace_id, name, SERVER)
        if decision.decision is Decision.DROP:
            return contextlib.nullcontext(trace.INVALID_SPAN)
        if not caller.is_valid:
            self.ids.preset = trace_id  # taken by the span started right now
        return self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=SERVER,
            attributes={"http.request.method": request.method, "http.route": route},
        )


def tracer_provider(processor: SpanProcessor, env: Mapping[str, str]) -> TracerProvider:
    """A provider handing spans to `processor`; the sampler comes from OTEL_TRACES_SAMPLER."""
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: SERVICE}
    # shutdown_on_exit off: an atexit shutdown could wait a minute on a dead collector
    provider = TracerProvider(
        resource=Resource.create(attributes),
        id_generator=PresetTraceIds(),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(processor)
    return provider


@contextlib.asynccontextmanager
async def open_tracer(env: Mapping[str, str] | None = None) -> AsyncIterator[Tracing]:
    """The proxy's tracer while the app runs (a no-op one when tracing is
    off). At shutdown the spans still queued are exported, for at most
    EXPORT_AT_EXIT_SECONDS: an exporter retrying an unreachable collector
    (up to a minute) must not hold the exit past its bound."""
    env = os.environ if env is None else env
    if not tracing_enabled(env):
        yield Tracing()
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = tracer_provider(BatchSpanProcessor(OTLPSpanExporter()), env)
    try:
        yield Tracing(provider)
    finally:
        timeout = int(EXPORT_AT_EXIT_SECONDS * 1000)
        if not await asyncio.to_thread(provider.force_flush, timeout):
            log.warning("traces: spans still queued at exit were dropped (collector too slow)")
        # the exporter's thread may still be retrying: let it go with the process
        threading.Thread(target=provider.shutdown, name="traces-shutdown", daemon=True).start()


def step(
    tracer: trace.Tracer, name: str, *, current: bool = False, **attributes: str | int
) -> AbstractContextManager[trace.Span]:
    """A span for one step of the current request (a child of its span); none
    when the request is not recorded (not sampled, or tracing off), so most
    requests cost no span beyond their own. `current`: the step's span becomes
    the current one (a step that propagates it, as to Triton); a leaf step's
    does not (cheaper)."""
    if not trace.get_current_span().is_recording():
        return contextlib.nullcontext(trace.INVALID_SPAN)
    if current:
        return tracer.start_as_current_span(name, attributes=attributes)
    return ended(tracer.start_span(name, attributes=attributes))


@contextlib.contextmanager
def ended(span: trace.Span) -> Iterator[trace.Span]:
    """`span`, ended after the block; an exception marks it failed."""
    try:
        yield span
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        span.end()


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
