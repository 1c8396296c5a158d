"""The model's own spans (tokenize, forward) inside Triton's trace of each
traced request: children of Triton's model span, whose context the Python
backend hands over (`request.trace().get_context()`, a JSON
`{"traceparent": ...}`, or None for a request Triton does not trace).

A dynamic batch tokenizes and runs the texts of all its requests together:
each traced request gets the batch's steps, with their true start and end,
and the batch's size as attributes. Off (no cost) unless an OTLP endpoint is
set (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT, as for the proxy
and tritonserver); exported in batches from a background thread.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE = "triton-inference-server"  # as tritonserve names Triton's own spans


def parent_contexts(raw: Sequence[str | None]) -> list[Mapping[str, str]]:
    """The carriers of the traced requests among `raw` (get_context() of each)."""
    carriers: list[Mapping[str, str]] = []
    for context in raw:
        if not context:
            continue
        carrier = json.loads(context)
        if isinstance(carrier, dict) and carrier.get("traceparent"):
            carriers.append(carrier)
    return carriers


class StepSpans:
    """Records steps of one execute() under each traced request's span."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.tracer: Any = None
        self.provider: Any = None
        if not any(env.get(name) for name in ENDPOINT_VARIABLES):
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

        # recorded only under a sampled parent: Triton's span of a traced request
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": SERVICE}),
            sampler=ParentBased(ALWAYS_OFF),
            shutdown_on_exit=False,  # shutdown() below bounds the wait instead
        )
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("distilbert_sst2")

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def parents(self, requests: Sequence[Any]) -> list[Any]:
        """The span contexts of the traced requests (none when tracing is off)."""
        if not self.enabled:
            return []
        from opentelemetry.propagate import extract

        carriers = parent_contexts([request.trace().get_context() for request in requests])
        return [extract(carrier) for carrier in carriers]

    @contextmanager
    def step(self, parents: Sequence[Any], name: str, **attributes: int) -> Iterator[None]:
        """Time the block; record it as `name` under each of `parents`."""
        if not parents:
            yield
            return
        started = time.time_ns()
        try:
            yield
        finally:
            ended = time.time_ns()
            for parent in parents:
                span = self.tracer.start_span(
                    name, context=parent, start_time=started, attributes=attributes
                )
                span.end(end_time=ended)

    def shutdown(self, seconds: float = 2.0) -> None:
        """Export the spans still queued, for at most `seconds` (an exporter
        retrying a dead collector must not hold the model's unload)."""
        if self.provider is None:
            return
        self.provider.force_flush(int(seconds * 1000))
        threading.Thread(target=self.provider.shutdown, daemon=True).start()
