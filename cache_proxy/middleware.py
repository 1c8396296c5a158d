"""Middlewares: every error becomes `{"error", "error_type"}` JSON, every
answer of a route that charged the rate limit gets its X-RateLimit-* (errors
included; a body refused before the charge, such as a 400, has none), every
answer is counted in metrics, requests in flight are tracked for the drain, and each
request has its trace span (tracing.py)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry.trace import StatusCode

from cache_proxy.access_log import QUIET_PATHS
from cache_proxy.errors import ApiError, ClientClosed, MethodNotAllowed, NotFound, PayloadTooLarge
from cache_proxy.keys import BILL, DRAIN, METRICS, TRACING
from cache_proxy.tracing import TRACE_HEADER, trace_id

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: ApiError) -> web.Response:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return web.json_response(exc.body(), status=exc.status, headers=headers)


def route_list(app: web.Application) -> str:
    """`POST /predict, GET /model, ...` from the router itself."""
    routes = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    return ", ".join(f"{method} {path}" for path, method in sorted(routes))


def from_http_exception(exc: web.HTTPException, app: web.Application) -> ApiError:
    """aiohttp's own 404/405/413 into the taxonomy."""
    if exc.status == 404:
        return NotFound(
            f"no such route; the API is {route_list(app)} (described at /openapi.json and /docs)"
        )
    if exc.status == 405:
        return MethodNotAllowed(f"method not allowed; allowed: {exc.headers.get('Allow', '')}")
    if exc.status == 413:
        return PayloadTooLarge(f"request body too large: {exc.text}")
    error = ApiError(exc.reason)
    error.status, error.error_type = exc.status, f"http_{exc.status}"
    return error


def route_name(request: web.Request) -> str:
    """Metric label: the route template, never the raw path (bounded cardinality)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    try:
        response = await handler(request)
    except ClientClosed as exc:
        log.info("%s %s from %s: %s", request.method, request.path, request.remote, exc.message)
        response = error_response(exc)
    except ApiError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = from_http_exception(exc, request.app)
        response = error_response(error)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = error_response(ApiError("internal error; see the proxy log"))
    if (bill := request.get(BILL)) is not None and bill.decision is not None:
        response.headers.update(bill.decision.headers())  # what the route was charged
    metrics = request.app[METRICS]
    route = route_name(request)
    metrics.requests.labels(route, str(response.status)).inc()
    metrics.latency.labels(route).observe(time.monotonic() - started)
    return response


@web.middleware
async def in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Which connections are handling a request (the drain waits for them; the
    connection cap spares them); while draining, every answer closes its
    connection so the client reconnects to another replica."""
    drain = request.app[DRAIN]
    drain.enter(request.protocol)
    try:
        response = await handler(request)
    finally:
        drain.leave(request.protocol)
    if drain.draining:
        response.force_close()
    return response


@web.middleware
async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's span (a 5xx answer marks it failed); a sampled request's
    answer names its trace in X-Trace-Id (and so does the access log). Probes
    and scrapes are not traced (as they are not logged)."""
    if request.path in QUIET_PATHS:
        return await handler(request)
    with request.app[TRACING].request_span(request, route_name(request)) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(StatusCode.ERROR)
        if (sampled := trace_id(span)) is not None:
            response.headers[TRACE_HEADER] = sampled
    return response
