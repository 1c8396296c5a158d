"""Optional abuse controls on the model routes: API keys, then the rate limit."""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from cache_proxy.errors import ApiError, RateLimited, Unauthorized
from cache_proxy.keys import LIMITER, METRICS, SETTINGS
from cache_proxy.middleware import Handler, route_name
from cache_proxy.settings import api_key_set

GUARDED_ROUTES = frozenset({"/predict", "/model"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sst2"'}


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def key_is_valid(token: str | None, keys: frozenset[str]) -> bool:
    """Constant-time comparison against every configured key."""
    if token is None:
        return False
    encoded = token.encode()
    return any(hmac.compare_digest(encoded, key.encode()) for key in keys)


def client_identity(
    token: str | None, peer: str | None, forwarded_for: str | None, trust_forwarded: bool
) -> str:
    """Bucket name: a hash of the API key, else the client address."""
    if token is not None:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    if trust_forwarded and forwarded_for:
        return "ip:" + forwarded_for.split(",")[0].strip()
    return f"ip:{peer or 'unknown'}"


@web.middleware
async def abuse_controls(request: web.Request, handler: Handler) -> web.StreamResponse:
    if route_name(request) not in GUARDED_ROUTES:
        return await handler(request)
    app = request.app
    settings = app[SETTINGS]
    token = bearer_token(request.headers.get("Authorization"))
    keys = api_key_set(settings)
    if keys and not key_is_valid(token, keys):
        app[METRICS].rejections.labels("unauthorized").inc()
        reason = "missing" if token is None else "invalid"
        raise Unauthorized(
            f"{reason} API key: send the header Authorization: Bearer <key>", headers=CHALLENGE
        )
    decision = await app[LIMITER].check(
        client_identity(
            token if keys else None,
            request.remote,
            request.headers.get("X-Forwarded-For"),
            settings.trust_x_forwarded_for,
        )
    )
    if decision is not None and not decision.allowed:
        app[METRICS].rejections.labels("rate_limit").inc()
        raise RateLimited(
            f"rate limit of {settings.rate_limit_per_second:g} requests/s "
            f"(burst {settings.rate_limit_burst}) exceeded",
            retry_after=decision.retry_after,
            headers=decision.headers(),
        )
    try:
        response = await handler(request)
    except ApiError as exc:
        if decision is not None:
            exc.headers.update(decision.headers())
        raise
    if decision is not None:
        response.headers.update(decision.headers())
    return response
