"""Abuse controls on the model routes: who the client is, API keys, then the
rate limit's first check (the request's base cost; the route charges its cache
misses once it knows them)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from cache_proxy.errors import ApiError, RateLimited, Unauthorized
from cache_proxy.keys import CLIENT, LIMITER, METRICS, RATE_DECISION, SETTINGS
from cache_proxy.middleware import Handler, error_response, route_name
from cache_proxy.settings import IPNetwork, api_key_set, trusted_networks

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


def is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str:
    """The peer, or, when the peer is a trusted proxy, the rightmost
    X-Forwarded-For address that is not trusted: everything left of it was
    written by the client and proves nothing."""
    if peer is None:
        return "unknown"
    if not forwarded_for or not is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            return hop[:64]
    return hops[0][:64] if hops else peer


def client_identity(token: str | None, address: str) -> str:
    """Bucket and fair-share name: a hash of the API key, else the address."""
    if token is not None:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return f"ip:{address}"


@web.middleware
async def abuse_controls(request: web.Request, handler: Handler) -> web.StreamResponse:
    if route_name(request) not in GUARDED_ROUTES:
        return await handler(request)
    app = request.app
    settings = app[SETTINGS]
    token = bearer_token(request.headers.get("Authorization"))
    keys = api_key_set(settings)
    if keys and not key_is_valid(token, keys):
        app[METRICS].shed(reason="unauthorized")
        reason = "missing" if token is None else "invalid"
        raise Unauthorized(
            f"{reason} API key: send the header Authorization: Bearer <key>", headers=CHALLENGE
        )
    address = client_address(
        request.remote, request.headers.get("X-Forwarded-For"), trusted_networks(settings)
    )
    client = request[CLIENT] = client_identity(token if keys else None, address)
    decision = await app[LIMITER].check(client, cost=1)
    if decision is not None:
        request[RATE_DECISION] = decision
    if decision is not None and not decision.allowed:
        app[METRICS].shed(reason="rate_limit", cost=1)
        raise RateLimited(
            f"rate limit of {settings.rate_limit_per_second:g} cost units/s "
            f"(burst {settings.rate_limit_burst}) exceeded",
            retry_after=decision.retry_after,
            headers=decision.headers(),
        )
    try:
        response = await handler(request)
    except ApiError as exc:  # may be shared with other requests (single-flight): not mutated
        response = error_response(exc)
    if (decision := request.get(RATE_DECISION)) is not None:  # the route may have charged more
        response.headers.update(decision.headers())
    return response
