"""OpenTelemetry traces of the proxy's requests, one trace across the proxy and Triton.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set. The
SDK then reads its own standard variables: OTEL_SERVICE_NAME (default here:
cache-proxy), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default:
parentbased_always_on), OTEL_BSP_* and OTEL_EXPORTER_OTLP_* (OTLP/HTTP,
protobuf). Spans go out in batches from a background thread.

A request's span is the parent of its steps' spans (body, cache lookup,
single-flight wait, admission wait, Triton call, cache write). Sampling is
decided first, by the SDK's sampler (or, for a new trace it would drop by
its id alone, by `dropped_roots`' comparison): an unsampled request gets no
span at all. A sampled Triton call carries the W3C `traceparent` of its span; Triton
traces every request that carries one (whatever its sampled flag), so an
unsampled call carries none. Probes and scrapes (/health, /health/ready,
/metrics) are not traced.

A sampled request's spans are `LeanSpan`s: ids, times, attributes and
events, handed to the SDK's span processor (batching, OTLP export) as the
SDK's own `ReadableSpan` (each is one, as the SDK's `Span` is, so nothing
is built or copied when it ends). The SDK's `Span` took about 30 µs
to start and end, on a Xeon, for the 10 µs of bookkeeping a span needs here
(locks, limits, a sampler call per span, a processor call at start): three
of them made a sampled cache hit cost as much CPU as an untraced one
(perf/README.md, "What tracing costs"). They are exported by the SDK's
OTLP/HTTP exporter, whose request bytes cache_proxy.otlp_wire writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from time import time_ns
from types import TracebackType

from aiohttp import web
from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE = "cache-proxy"
SCOPE = InstrumentationScope("cache_proxy")
EXPORT_AT_EXIT_SECONDS = 2.0
log = logging.getLogger(__name__)
TRACE_HEADER = "X-Trace-Id"  # a sampled request's trace id, on its answer
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET = Status(StatusCode.UNSET)
NOT_RECORDED = contextlib.nullcontext(trace.INVALID_SPAN)  # reusable: it holds no state
NO_PARENT = context_api.Context()  # a request without a `traceparent` starts a trace


def tracing_enabled(env: Mapping[str, str]) -> bool:
    """An OTLP endpoint is set: traces are exported there."""
    return any(env.get(name) for name in ENDPOINT_VARIABLES)


@dataclass(frozen=True)
class Recorder:
    """Where a sampled request's spans go when they end."""

    processor: SpanProcessor
    resource: Resource
    ids: RandomIdGenerator

    def context(self, trace_id: int, trace_state: trace.TraceState | None) -> SpanContext:
        """A new sampled span's context in trace `trace_id`."""
        span_id = self.ids.generate_span_id()
        return SpanContext(trace_id, span_id, False, SAMPLED, trace_state)


class LeanSpan(trace.Span, ReadableSpan):
    """A span of a sampled request, recorded from its start to its end, and
    its own `ReadableSpan` (as the SDK's `Span` is): when it ends, the span
    processor gets it as it is, with nothing built or copied.

    As a context manager it ends when its block does, marked failed by an
    exception. A current span (`current`) is the current one during its
    block, and a cancellation is no failure of it (as the SDK's `use_span`:
    a request the server stops, or a call it gives up)."""

    # ReadableSpan's fields that are the same for every span here
    _links: Sequence[trace.Link] = ()
    _instrumentation_info = None
    _instrumentation_scope = SCOPE
    _end_time: int | None = None
    _status = UNSET
    _token: object = None  # while it is the current span: the context's token

    def __init__(
        self,
        recorder: Recorder,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, types.AttributeValue],
        current: bool = False,
    ) -> None:
        self._recorder, self._resource, self._current = recorder, recorder.resource, current
        self._name, self._parent, self._kind = name, parent, kind
        self._context: SpanContext = context
        self._attributes: dict[str, types.AttributeValue] = dict(attributes)
        self._events: list[Event] = []
        self._start_time = time_ns()

    def child(
        self, name: str, attributes: Mapping[str, types.AttributeValue], current: bool = False
    ) -> LeanSpan:
        """A span of one step of this one's work, started now."""
        context = self._recorder.context(self._context.trace_id, self._context.trace_state)
        return LeanSpan(
            self._recorder, name, context, self._context, SpanKind.INTERNAL, attributes, current
        )

    def __enter__(self) -> LeanSpan:
        if self._current:
            self._token = context_api.attach(trace.set_span_in_context(self))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exception: BaseException | None,
        frames: TracebackType | None,
    ) -> None:
        if exception is not None and (not self._current or isinstance(exception, Exception)):
            self.record_exception(exception)
            self.set_status(StatusCode.ERROR, f"{type(exception).__name__}: {exception}")
        self.end()
        if self._token is not None:
            context_api.detach(self._token)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is None:
            self._end_time = time_ns() if end_time is None else end_time
            self._recorder.processor.on_end(self)

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    # As the SDK's: an ended span takes no more writes (the exporter's thread
    # may be reading it), a None value is dropped.
    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._end_time is None and value is not None:
            self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is None:
            self._events.append(Event(name, attributes, timestamp))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK's: OK is final, UNSET is ignored."""
        status = status if isinstance(status, Status) else Status(status, description)
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An `exception` event with the semantic conventions' attributes (as the SDK's)."""
        kind = type(exception)
        self.add_event(
            "exception",
            {
                "exception.type": kind.__qualname__
                if kind.__module__ == "builtins"
                else f"{kind.__module__}.{kind.__qualname__}",
                "exception.message": str(exception),
                "exception.stacktrace": "".join(traceback.format_exception(exception)),
                "exception.escaped": str(escaped),
                **(attributes or {}),
            },
            timestamp,
        )


class Tracing:
    """Each request's sampling, decided before any span exists (an
    unsampled request costs a random number and a comparison), and a
    sampled request's span."""

    def __init__(
        self, processor: SpanProcessor | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        """`processor`: where spans go as they end (None: tracing off); `env`:
        where OTEL_SERVICE_NAME is looked for (default: the process's
        environment; the SDK reads its sampler and resource variables there)."""
        self.provider: TracerProvider | None = None
        self.recorder: Recorder | None = None
        self.dropped_root: Callable[[int], bool] = lambda trace_id: True
        if processor is not None:
            # the provider reads the sampler (OTEL_TRACES_SAMPLER) and the resource
            # (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME), and flushes and shuts
            # down the processor
            self.provider = tracer_provider(processor, os.environ if env is None else env)
            self.recorder = Recorder(processor, self.provider.resource, RandomIdGenerator())
            self.dropped_root = dropped_roots(self.provider.sampler)

    def request_span(self, request: web.Request, route: str) -> AbstractContextManager[trace.Span]:
        """The request's span (named by its route template), current while it
        runs, continuing the caller's trace if it sent a `traceparent`; none
        if not sampled."""
        if self.provider is None or self.recorder is None:
            return NOT_RECORDED
        headers = request.headers
        if "traceparent" in headers:
            parent = propagate.extract(headers)
            caller = trace.get_current_span(parent).get_span_context()
            trace_id = caller.trace_id if caller.is_valid else self.recorder.ids.generate_trace_id()
        else:  # a new trace: most are dropped by their id alone
            parent, caller = NO_PARENT, trace.INVALID_SPAN_CONTEXT
            trace_id = self.recorder.ids.generate_trace_id()
            if self.dropped_root(trace_id):
                return NOT_RECORDED
        name = f"{request.method} {route}"
        decision = self.provider.sampler.should_sample(parent, trace_id, name, SpanKind.SERVER)
        if decision.decision is not Decision.RECORD_AND_SAMPLE:  # RECORD_ONLY: never exported
            return NOT_RECORDED
        context = self.recorder.context(trace_id, decision.trace_state)
        attributes = {
            "http.request.method": request.method,
            "http.route": route,
            **(decision.attributes or {}),
        }
        parent_context = caller if caller.is_valid else None
        kind = SpanKind.SERVER
        return LeanSpan(
            self.recorder, name, context, parent_context, kind, attributes, current=True
        )


def dropped_roots(sampler: Sampler) -> Callable[[int], bool]:
    """Whether `sampler` drops a new trace (a request without a `traceparent`)
    by its trace id alone, as its `should_sample` decides: the SDK's ratio
    based and always off samplers, alone or as a parent based one's root. A
    request it drops costs a comparison, not a sampler call (about 15 Python
    calls), which every unsampled request would pay. Not known for any other
    sampler (False: it is asked), nor for what is not dropped (the sampler
    decides, with its attributes and trace state)."""
    if type(sampler).should_sample is ParentBased.should_sample:
        assert isinstance(sampler, ParentBased)
        sampler = sampler._root  # the SDK's sampler of a trace's first span
    if type(sampler).should_sample is TraceIdRatioBased.should_sample:
        assert isinstance(sampler, TraceIdRatioBased)
        limit, bound = sampler.TRACE_ID_LIMIT, sampler.bound
        return lambda trace_id: trace_id & limit >= bound
    dropped = sampler is ALWAYS_OFF
    return lambda trace_id: dropped


def tracer_provider(processor: SpanProcessor, env: Mapping[str, str]) -> TracerProvider:
    """A provider holding `processor`, the resource and the sampler (from OTEL_TRACES_SAMPLER)."""
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: SERVICE}
    # shutdown_on_exit off: an atexit shutdown could wait a minute on a dead collector
    provider = TracerProvider(
        resource=Resource.create(attributes),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(processor)
    return provider


@contextlib.asynccontextmanager
async def open_tracer(env: Mapping[str, str] | None = None) -> AsyncIterator[Tracing]:
    """The proxy's `Tracing` while the app runs (sampling nothing when
    tracing is off). At shutdown the spans still queued are exported, for at most
    EXPORT_AT_EXIT_SECONDS: an exporter retrying an unreachable collector
    (up to a minute) must not hold the exit past its bound."""
    env = os.environ if env is None else env
    if not tracing_enabled(env):
        yield Tracing()
        return
    from cache_proxy.otlp_wire import SpanExporter  # the SDK's, with a faster encoder

    tracing = Tracing(BatchSpanProcessor(SpanExporter()), env)
    provider = tracing.provider
    assert provider is not None
    try:
        yield tracing
    finally:
        timeout = int(EXPORT_AT_EXIT_SECONDS * 1000)
        if not await asyncio.to_thread(provider.force_flush, timeout):
            log.warning("traces: spans still queued at exit were dropped (collector too slow)")
        # the exporter's thread may still be retrying: let it go with the process
        threading.Thread(target=provider.shutdown, name="traces-shutdown", daemon=True).start()


def step(
    name: str, *, current: bool = False, **attributes: str | int
) -> AbstractContextManager[trace.Span]:
    """A span for one step of the current request (a child of the current
    span); none when the request is not recorded (not sampled, or tracing
    off), so most requests cost no span beyond their own. `current`: the
    step's span becomes the current one (a step that propagates it, as to
    Triton); a leaf step's does not (cheaper)."""
    parent = trace.get_current_span()
    if type(parent) is not LeanSpan or not parent.is_recording():
        return NOT_RECORDED
    return parent.child(name, attributes, current)


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
