"""A small OTLP/HTTP trace receiver: `make up TRACING=1`'s local collector and
the tracing tests' receiver.

    python -m devstack.otlp [--host 127.0.0.1] [--port 4318] [--file traces.jsonl]

POST /v1/traces takes OTLP/HTTP in protobuf (the Python SDK: the proxy and
the model) or JSON (tritonserver's exporter), decoded with opentelemetry-proto.
Every span is kept in memory (the most recent MAX_SPANS) and, with --file,
appended to a JSON-lines file. GET /traces lists the recent traces, GET
/traces/{trace_id} shows one as an indented tree, GET /spans returns every
span kept as JSON. Not a tracing backend: use a collector and Jaeger or
Tempo in production (k8s/components/tracing).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

MAX_SPANS = 100_000
MAX_UNREAD = 200  # exports held before their spans are read out (the SDK sends 512 spans at most)
ID_FIELDS = ("traceId", "spanId", "parentSpanId")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str  # hex
    span_id: str
    parent_span_id: str  # empty for a root
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[str]

    @property
    def milliseconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes ids in hex where protobuf's JSON mapping expects base64."""
    if isinstance(node, list):
        return [hex_ids_to_base64(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: base64.b64encode(bytes.fromhex(value)).decode()
        if key in ID_FIELDS and isinstance(value, str)
        else hex_ids_to_base64(value)
        for key, value in node.items()
    }


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """An export request in protobuf or OTLP/JSON; ValueError if it is neither."""
    message = ExportTraceServiceRequest()
    try:
        if "json" in content_type:
            json_format.ParseDict(
                hex_ids_to_base64(json.loads(body)), message, ignore_unknown_fields=True
            )
        else:
            message.ParseFromString(body)
    except (json_format.ParseError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"not an OTLP trace export: {exc}") from None
    return message


def attribute_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def spans_of(message: ExportTraceServiceRequest) -> list[Span]:
    spans = []
    for resource_spans in message.resource_spans:
        resource = {a.key: attribute_value(a.value) for a in resource_spans.resource.attributes}
        service = str(resource.get("service.name", "unknown"))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        service=service,
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={a.key: attribute_value(a.value) for a in span.attributes},
                        events=[event.name for event in span.events],
                    )
                )
    return spans


def tree(spans: list[Span]) -> str:
    """One trace as an indented tree, children in start order."""
    by_parent: dict[str, list[Span]] = {}
    ids = {span.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        by_parent.setdefault(parent, []).append(span)
    start = min((span.start_ns for span in spans), default=0)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in by_parent.get(parent, []):
            offset = (span.start_ns - start) / 1e6
            lines.append(
                f"{'  ' * depth}{span.name} [{span.service}] "
                f"+{offset:.1f} ms, {span.milliseconds:.1f} ms"
            )
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


class Receiver:
    """The spans received so far (and the file they are appended to).

    An export is parsed when it arrives (a body that is not one gets a 400),
    its spans read out of it only when asked for (or at once with a file):
    in `make bench` this receiver shares the cores of the stack it measures,
    where a collector would not.
    """

    def __init__(self, file: Path | None = None) -> None:
        self.kept: deque[Span] = deque(maxlen=MAX_SPANS)
        self.unread: list[ExportTraceServiceRequest] = []
        self.file = file

    @property
    def spans(self) -> deque[Span]:
        self.read_out()
        return self.kept

    def read_out(self) -> None:
        """Read the spans out of the exports not read yet."""
        for message in self.unread:
            self.kept.extend(spans_of(message))
        self.unread.clear()

    def add(self, message: ExportTraceServiceRequest) -> None:
        if self.file is None:
            self.unread.append(message)
            if len(self.unread) >= MAX_UNREAD:  # bounded
                self.read_out()
            return
        spans = spans_of(message)
        self.kept.extend(spans)
        with self.file.open("a") as out:
            out.writelines(json.dumps(asdict(span)) + "\n" for span in spans)

    def trace(self, trace_id: str) -> list[Span]:
        return [span for span in self.spans if span.trace_id == trace_id]

    async def export(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            message = parse_request(body, request.content_type)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        self.add(message)
        if "json" in request.content_type:
            return web.json_response({})
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def list_traces(self, request: web.Request) -> web.Response:
        roots = [span for span in self.spans if not span.parent_span_id]
        lines = [
            f"{r.trace_id}  {r.name} [{r.service}] {r.milliseconds:.1f} ms"
            for r in sorted(roots, key=lambda s: s.start_ns, reverse=True)[:100]
        ]
        return web.Response(text="\n".join(lines) + "\n")

    async def show_trace(self, request: web.Request) -> web.Response:
        spans = self.trace(request.match_info["trace_id"].lower())
        if not spans:
            raise web.HTTPNotFound(text="no such trace (yet: spans are exported in batches)\n")
        return web.Response(text=tree(spans) + "\n")

    async def all_spans(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(span) for span in self.spans])


def receiver_app(receiver: Receiver) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", receiver.export)
    app.router.add_get("/traces", receiver.list_traces)
    app.router.add_get("/traces/{trace_id}", receiver.show_trace)
    app.router.add_get("/spans", receiver.all_spans)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.otlp", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--file", type=Path, help="append every span here, as JSON lines")
    args = parser.parse_args(argv)
    web.run_app(receiver_app(Receiver(args.file)), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
