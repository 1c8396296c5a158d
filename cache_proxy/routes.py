"""HTTP handlers: /predict, /model, /health, /health/ready, /metrics, /openapi.json, /docs."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from swagger_ui import api_doc

from cache_proxy.bodies import body_bound
from cache_proxy.body import read_body
from cache_proxy.contract import LongTexts, parse_request, unique
from cache_proxy.keys import (
    BILL,
    BODIES,
    CLIENT,
    DRAIN,
    LIMITER,
    METRICS,
    PREDICTOR,
    SERVED,
    SETTINGS,
)
from cache_proxy.long_texts import plan_request
from cache_proxy.openapi import openapi_spec
from cache_proxy.predictor import Spend
from cache_proxy.tracing import step


async def predict(request: web.Request) -> web.Response:
    """Holds the body's bytes from before it is read until the answer (bodies.py)."""
    started = time.monotonic()
    settings = request.app[SETTINGS]
    with request.app[BODIES].hold(body_bound(request, settings.max_body_bytes)) as held:
        with step("body and parse") as span:
            body = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
            held.resize(len(body))
            parsed = parse_request(body, settings.max_texts, settings.max_text_chars)
            span.set_attributes({"bytes": len(body), "texts": len(parsed.texts)})
            del body
        return await answer(request, parsed.texts, parsed.long_texts, started)


async def answer(
    request: web.Request, asked: list[str], long_texts: LongTexts, started: float
) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    app[METRICS].texts_per_request.observe(len(asked))
    served, client, limiter = app[SERVED], request[CLIENT], app[LIMITER]
    # Reserve the base unit and what every text could cost before any work
    # (tokenizing long texts included); settle against the cost admitted to
    # the model, paid even if the request fails. Windows are charged as sent.
    estimate = 1 + sum(await served.text_costs()(unique(asked))) if limiter.enforced else 1
    bill = request[BILL] = await limiter.open(client, estimate)
    spend = Spend()
    try:
        plan = await plan_request(
            asked,
            long_texts,
            served.text_costs().tokenizer,  # fetched by the refresh loop, never here
            settings.window_overlap_tokens,
            settings.max_windows,
        )
        result = await app[PREDICTOR].predict(
            plan.texts, client, deadline=started + settings.request_timeout_seconds, spend=spend
        )
    finally:
        await bill.settle(1 + spend.admitted)
    headers = {
        "X-Cache": result.cache_status,
        "X-Inference-Time": f"{result.inference_ms:.2f}",
        "X-Total-Time": f"{(time.monotonic() - started) * 1000:.2f}",
    }
    if result.fingerprints:  # several only while the fleet serves one release at two numerics
        headers["X-Model-Fingerprint"] = ", ".join(result.fingerprints)
    if plan.truncated:  # the texts the model read only in part ([-1]: not known)
        known = plan.truncated != [-1]
        headers["X-Truncated"] = ", ".join(map(str, plan.truncated)) if known else "unknown"
        app[METRICS].truncated_texts.inc(len(plan.truncated) if known else 0)
    app[METRICS].windowed_texts.inc(plan.windowed)
    return web.json_response({"predictions": plan.answers(result.predictions)}, headers=headers)


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers; no dependency is consulted."""
    return web.json_response({"status": "alive"})


async def ready(request: web.Request) -> web.Response:
    """Readiness (ServedModel.ready): 200 `ready` or `degraded` (cached answers
    are served while Triton does not answer), 503 `not_ready` before the model
    was ever seen, and 503 `draining` at once when shutdown begins (SIGTERM).
    Redis is ok, degraded or disabled: it never fails readiness.
    """
    app = request.app
    if app[DRAIN].draining:
        return web.json_response({"status": "draining"}, status=503)
    body = await app[SERVED].ready(app[SETTINGS].ready_timeout_seconds)
    return web.json_response(body, status=503 if body["status"] == "not_ready" else 200)


async def model(request: web.Request) -> web.Response:
    """Identity of the served model (name, source, revision, fingerprint, standin)."""
    request[BILL] = await request.app[LIMITER].open(request[CLIENT], 1)
    identity = await request.app[SERVED].identity()
    return web.json_response({"model": identity.info})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def static(body: bytes, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    return handler


def setup(app: web.Application) -> None:
    spec = openapi_spec(app[SETTINGS])
    app.router.add_get(
        "/openapi.json", static(json.dumps(spec, indent=1).encode(), "application/json")
    )
    # Swagger UI 5 from the swagger-ui-py wheel: /docs, its assets under /docs/static
    # (served locally, no CDN) and the same spec at /docs/swagger.json.
    api_doc(app, config=spec, url_prefix="/docs", title=spec["info"]["title"], host_inject=False)
    app.router.add_post("/predict", predict)
    app.router.add_get("/model", model)
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)
