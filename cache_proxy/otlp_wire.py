"""Finished spans as the bytes of an OTLP `ExportTraceServiceRequest`,
written directly in protobuf's wire format.

The SDK's encoder (opentelemetry-exporter-otlp-proto-common) builds a message
object for every span, attribute and value, then serializes them: about 18 µs
a span on a Xeon, three times what recording the span costs, and it runs on
the proxy's own cores. This writes the same message in about a third of the
time (perf/README.md, "What tracing costs"); tests/unit/test_otlp_wire.py
parses both and compares them. Resources and scopes are rare: the SDK's own
functions encode them, once each. Spans repeat their names and most of their
attributes: those are written once and kept (a few thousand at most).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

log = logging.getLogger(__name__)
FIXED64 = struct.Struct("<Q")
FIXED32 = struct.Struct("<I")
DOUBLE = struct.Struct("<d")
UINT64 = (1 << 64) - 1  # a negative int64 is written as its two's complement
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


SMALL = [bytes((n,)) for n in range(0x80)]  # one-byte varints


def varint(n: int) -> bytes:
    if n < 0x80:
        return SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, message) after its `tag`."""
    n = len(payload)
    return tag + (SMALL[n] if n < 0x80 else varint(n)) + payload


def text(tag: bytes, value: str) -> bytes:
    """A string field; none when empty (proto3 omits defaults)."""
    return delimited(tag, value.encode()) if value else b""


def count(tag: bytes, n: int) -> bytes:
    """A uint32 field; none when 0."""
    return tag + varint(n) if n else b""


# Field tags: (field number << 3 | wire type), wire types 0 varint, 1 fixed64,
# 2 length-delimited, 5 fixed32; every message's field 1, 2... as its proto.
F1, F2, F3, F4, F5, F6, F7 = (bytes((n << 3 | 2,)) for n in range(1, 8))  # delimited
KINDS = {kind: b"\x30" + varint(kind.value + 1) for kind in SpanKind}  # 6: kind (proto: from 1)
FLAGS = 0x100  # SpanFlags: CONTEXT_HAS_IS_REMOTE; | 0x200: CONTEXT_IS_REMOTE
LOCAL, REMOTE = (b"\x85\x01" + FIXED32.pack(f) for f in (FLAGS, FLAGS | 0x200))  # 16: flags
UNSET_STATUS = b"\x7a\x00"  # 15: status, empty


def any_value(value: Any) -> bytes:
    """An AnyValue, by the SDK's rules (_encode_value). Its value is a oneof:
    written even when it is the default (0, "", False)."""
    if isinstance(value, str):
        return delimited(F1, value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"  # 2: bool_value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:  # the SDK's protobuf refuses it too
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + varint(value & UINT64)  # 3: int_value
    if isinstance(value, float):
        return b"\x21" + DOUBLE.pack(value)  # 4: double_value
    if isinstance(value, bytes):
        return delimited(F7, value)
    if isinstance(value, Sequence):
        return delimited(F5, b"".join([delimited(F1, any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        pairs = [delimited(F1, key_value(str(k), v)) for k, v in value.items()]
        return delimited(F6, b"".join(pairs))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


KEYS: dict[str, bytes] = {}  # a KeyValue's key field, by key (spans repeat their keys)


def key_value(key: str, value: Any) -> bytes:
    encoded = KEYS.get(key)
    if encoded is None:
        encoded = text(F1, key)
        if len(KEYS) < 1024:
            KEYS[key] = encoded
    return encoded + delimited(F2, any_value(value))


SCALARS = (str, bool, int, float)
PAIRS: dict[tuple[bytes, str, type, Any], bytes] = {}  # encoded KeyValue fields with a scalar
KEPT = 4096  # PAIRS and NAMES at most: spans repeat their names and most of their attributes


def attributes(tag: bytes, values: Mapping[str, Any] | None) -> bytes:
    """Repeated KeyValue; one that cannot be encoded is left out and logged (as the SDK)."""
    if not values:
        return b""
    out = []
    for key, value in values.items():
        kind = type(value)
        pair = (tag, key, kind, value)  # the type too: True == 1 and 1 == 1.0
        encoded = PAIRS.get(pair) if kind in SCALARS else None
        if encoded is None:
            try:
                encoded = delimited(tag, key_value(key, value))
            except Exception as error:  # as the SDK's encoder: the span still goes
                log.exception("Failed to encode key %s: %s", key, error)
                continue
            if kind in SCALARS and len(PAIRS) < KEPT:
                PAIRS[pair] = encoded
        out.append(encoded)
    return b"".join(out)


NAMES: dict[str, bytes] = {}  # a Span's name field, by name


def name(value: str) -> bytes:
    encoded = NAMES.get(value)
    if encoded is None:
        encoded = text(F5, value)
        if len(NAMES) < KEPT:
            NAMES[value] = encoded
    return encoded


def span_flags(parent: SpanContext | None) -> bytes:
    return REMOTE if parent and parent.is_remote else LOCAL


def span(s: ReadableSpan) -> bytes:
    """One `Span` message, as the SDK's _encode_span."""
    context = s.context
    assert context is not None
    parent = s.parent
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),  # 1: trace_id
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),  # 2: span_id
    ]
    if context.trace_state:
        parts.append(text(F3, ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    if parent:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))  # 4: parent_span_id
    parts += [
        name(s.name),
        KINDS[s.kind],
        b"\x39" + FIXED64.pack(s.start_time or 0),  # 7: start_time_unix_nano
        b"\x41" + FIXED64.pack(s.end_time or 0),  # 8: end_time_unix_nano
        attributes(b"\x4a", s.attributes),  # 9
        count(b"\x50", s.dropped_attributes),  # 10
    ]
    for event in s.events:
        encoded = (
            b"\x09"  # 1: time_unix_nano
            + FIXED64.pack(event.timestamp)
            + text(F2, event.name)
            + attributes(F3, event.attributes)
            + count(b"\x20", event.dropped_attributes)  # 4
        )
        parts.append(delimited(b"\x5a", encoded))  # 11: events
    parts.append(count(b"\x60", s.dropped_events))  # 12
    for link in s.links:
        encoded = (
            b"\x0a\x10"
            + link.context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + link.context.span_id.to_bytes(8, "big")
            + attributes(F4, link.attributes)
            + count(b"\x28", link.dropped_attributes)  # 5
            + b"\x35"  # 6: flags, fixed32
            + FIXED32.pack(FLAGS | (0x200 if link.context.is_remote else 0))
        )
        parts.append(delimited(b"\x6a", encoded))  # 13: links
    parts.append(count(b"\x70", s.dropped_links))  # 14
    status = s.status
    if status.status_code is StatusCode.UNSET and not status.description:
        parts.append(UNSET_STATUS)
    else:  # 2: message, 3: code
        encoded = text(F2, status.description or "") + count(b"\x18", status.status_code.value)
        parts.append(delimited(b"\x7a", encoded))
    parts.append(span_flags(parent))
    return b"".join(parts)


MEMORY = 64  # resources an Encoder keeps encoded (and scopes): the proxy has one


class Encoder:
    """ExportTraceServiceRequest bytes, the encoded resources and scopes kept."""

    def __init__(self) -> None:
        self.resources: dict[int, tuple[Resource, bytes]] = {}  # by id: the object, encoded
        self.scopes: dict[InstrumentationScope | None, bytes] = {}

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The request holding `spans`, grouped as the SDK's encoder groups
        them (a dict keyed by resource, hash and equality, then by scope),
        each group under its first resource object."""
        if len(self.resources) > MEMORY or len(self.scopes) > MEMORY:
            self.resources.clear()
            self.scopes.clear()
        Scopes = dict[InstrumentationScope | None, list[bytes]]
        groups: list[tuple[Resource, int, Scopes]] = []  # (first object, its hash, scopes)
        of_object: dict[int, Scopes] = {}  # by id: each resource object's group's scopes
        for s in spans:
            scopes = of_object.get(id(s.resource))
            if scopes is None:  # a Resource hashes its attributes as JSON: once per object
                digest = hash(s.resource)
                scopes = next((g for r, h, g in groups if h == digest and r == s.resource), None)
                if scopes is None:
                    scopes = {}
                    groups.append((s.resource, digest, scopes))
                of_object[id(s.resource)] = scopes
            encoded = scopes.setdefault(s.instrumentation_scope or None, [])
            encoded.append(delimited(F2, span(s)))
        out = []
        for resource, _, scopes in groups:
            body = [self.resource(resource)]  # ResourceSpans: 1 resource, 2 scope spans
            for scope, encoded in scopes.items():  # ScopeSpans: 1 scope, 2 spans
                body.append(delimited(F2, self.scope(scope) + b"".join(encoded)))
            body.append(text(F3, resource.schema_url))
            out.append(delimited(F1, b"".join(body)))
        return b"".join(out)

    def resource(self, resource: Resource) -> bytes:
        """This very object encoded (an equal one may list its attributes in another order)."""
        kept = self.resources.get(id(resource))
        if kept is None or kept[0] is not resource:
            encoded = delimited(F1, _encode_resource(resource).SerializeToString())
            kept = self.resources[id(resource)] = (resource, encoded)
        return kept[1]

    def scope(self, scope: InstrumentationScope | None) -> bytes:
        if scope not in self.scopes:
            encoded = _encode_instrumentation_scope(scope).SerializeToString()  # type: ignore[arg-type]
            self.scopes[scope] = delimited(F1, encoded)
        return self.scopes[scope]


class SpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (its settings, retries and transport),
    with the request's bytes written by `Encoder`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoder = Encoder()

    def _serialize_spans(self, spans: Sequence[ReadableSpan]) -> bytes:
        return self.encoder.request(spans)
