"""The OpenAPI 3.1 description of the proxy, built from the running settings;
the JSON schemas are generated from the pydantic models in schemas.py."""

from __future__ import annotations

from typing import Any

from cache_proxy.errors import taxonomy, when
from cache_proxy.schemas import components, predict_request
from cache_proxy.settings import Settings

API_VERSION = "1.0.0"
JSON = "application/json"
Schema = dict[str, Any]


PREDICT_HEADERS = {
    "X-Cache": ("hit, miss or partial: how many of the texts came from the cache.", "string"),
    "X-Total-Time": ("Time spent in the proxy, ms.", "string"),
    "X-Inference-Time": ("Time spent getting the misses computed, ms (0 on a hit).", "string"),
    "X-Model-Fingerprint": ("Fingerprint of the model that computed the scores.", "string"),
    "X-Truncated": (
        "Only when some text is over 512 tokens and `long_texts` is `truncate`: the indexes "
        "of those texts, of which the model read the first 512 (`0, 3`); `unknown` while "
        "the model's tokenizer is not loaded yet.",
        "string",
    ),
    "X-Trace-Id": (
        "Only when tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT) and this request was "
        "sampled: its OpenTelemetry trace id, also in the access log.",
        "string",
    ),
}
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": ("Token bucket size (RATE_LIMIT_BURST).", "integer"),
    "X-RateLimit-Remaining": ("Requests left right now.", "integer"),
    "X-RateLimit-Reset": ("Seconds until the bucket is full again.", "integer"),
}


LONG_REVIEW = "A gripping first act. " * 10 + "Then it drags on and on, and on. " * 120


HEADER_EXAMPLES = {
    "X-Cache": "partial",
    "X-Truncated": "1, 3",
    "X-Trace-Id": "0af7651916cd43dd8448eb211c80319c",
}


def headers(spec: dict[str, tuple[str, str]]) -> Schema:
    described: Schema = {}
    for name, (text, kind) in spec.items():
        described[name] = {"description": text, "schema": {"type": kind}}
        if name in HEADER_EXAMPLES:
            described[name]["example"] = HEADER_EXAMPLES[name]
    return described


def json_response(description: str, ref: str, extra_headers: Schema | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }
    if extra_headers:
        response["headers"] = extra_headers
    return response


def error_description(status: int) -> str:
    """What a status means, from the error classes that have it."""
    return " ".join(f"`{e.error_type}`: {when(e)}" for e in taxonomy() if e.status == status)


def errors(*statuses: int) -> dict[str, Schema]:
    return {str(s): json_response(error_description(s), "Error") for s in statuses}


def predict_operation(settings: Settings, guarded: bool) -> Schema:
    limits = RATE_LIMIT_HEADERS if settings.rate_limit_per_second > 0 else {}
    statuses = [400, 408, 413, 415, 422, 429, 502, 503] + ([401] if guarded else [])
    return {
        "operationId": "predict",
        "summary": "Sentiment scores for a list of texts",
        "description": (
            "Scores every text with DistilBERT SST-2 (its first 512 tokens). Texts "
            "already scored by the same model come from the cache; only the rest "
            "reach Triton, admitted by cost (see the README's cost model). The "
            "Content-Type header is not required; Content-Encoding may be gzip or deflate."
        ),
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": predict_request(settings),
                    "examples": {
                        "texts": {
                            "summary": "Two texts",
                            "value": {"text": ["I love you!", "I hate you!"]},
                        },
                        "windows": {
                            "summary": "A long review read whole, in windows",
                            "value": {"text": [LONG_REVIEW], "long_texts": "windows"},
                        },
                        "reject": {
                            "summary": "413 rather than reading only the first 512 tokens",
                            "value": {"text": [LONG_REVIEW], "long_texts": "reject"},
                        },
                    },
                }
            },
        },
        "responses": {
            "200": json_response(
                "Scores, one list per text, in input order.",
                "PredictResponse",
                headers(PREDICT_HEADERS | limits),
            ),
            **errors(*sorted(statuses)),
        },
    }


def openapi_spec(settings: Settings) -> Schema:
    """The document served at /openapi.json (limits and auth as configured)."""
    guarded = bool(settings.api_keys)
    predict = predict_operation(settings, guarded)
    model: Schema = {
        "operationId": "model",
        "summary": "The served model's identity",
        "responses": {
            "200": json_response("The model Triton serves.", "Model"),
            **errors(*([401, 503] if guarded else [503])),
        },
    }
    if guarded:
        predict["security"] = model["security"] = [{"bearerAuth": []}]
    spec: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "SST-2 sentiment inference",
            "version": API_VERSION,
            "description": (
                "DistilBERT SST-2 sentiment scores, served by Triton behind a "
                "per-text Redis cache. Every error is JSON "
                '`{"error": ..., "error_type": ...}`.'
            ),
        },
        "paths": {
            "/predict": {"post": predict},
            "/model": {"get": model},
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: the process answers",
                    "responses": {"200": json_response("Alive.", "Alive")},
                }
            },
            "/health/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: Triton's model is ready (Redis may be degraded)",
                    "responses": {
                        "200": json_response("Ready to serve.", "Readiness"),
                        "503": json_response("Not ready, or draining.", "Readiness"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": components()},
    }
    if guarded:
        spec["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    return spec
