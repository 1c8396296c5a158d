"""Abuse controls on the model routes: who the client is (`request[CLIENT]`,
the name routes charge the rate limit to) and API keys (a refused key costs
its address one unit of the rate limit)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from cache_proxy.errors import Unauthorized
from cache_proxy.keys import CLIENT, LIMITER, METRICS, SETTINGS
from cache_proxy.middleware import Handler, route_name
from cache_proxy.settings import IPNetwork

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
    encoded = header_bytes(token)
    return any(hmac.compare_digest(encoded, key.encode()) for key in keys)


def header_bytes(value: str) -> bytes:
    """A header value's bytes as sent (aiohttp keeps undecodable bytes as
    surrogates, which a plain encode() refuses)."""
    return value.encode("utf-8", "surrogateescape")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def hop_address(hop: str) -> IPAddress | None:
    """The address of one X-Forwarded-For hop or peer: `ip`, `ip:port`,
    `[ipv6]` or `[ipv6]:port`; None if it is none of those."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        hop = hop[1:].partition("]")[0]
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        address = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_name(address: IPAddress) -> str:
    """A client's name for its address: IPv6 clients by their /64, which one
    subscriber usually holds whole (rotating within it changes nothing)."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def is_trusted(address: IPAddress | None, trusted: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The peer, or, when the peer is a trusted proxy, the rightmost
    X-Forwarded-For hop that is not trusted, over every X-Forwarded-For
    header in order: everything left of it was written by the client and
    proves nothing."""
    if peer is None:
        return "unknown"
    peer_address = hop_address(peer)
    if peer_address is None:
        return peer[:64]
    if not forwarded_for or not is_trusted(peer_address, trusted):
        return address_name(peer_address)
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = hop_address(hop)
        if not is_trusted(address, trusted):
            return address_name(address) if address is not None else hop.strip()[:64]
    first = hop_address(hops[0]) if hops else None  # every hop is a trusted proxy
    return address_name(first or peer_address)


def client_identity(token: str | None, address: str) -> str:
    """Bucket and fair-share name: a hash of the API key, else the address."""
    if token is not None:
        return "key:" + hashlib.sha256(header_bytes(token)).hexdigest()[:16]
    return f"ip:{address}"


@web.middleware
async def abuse_controls(request: web.Request, handler: Handler) -> web.StreamResponse:
    if route_name(request) not in GUARDED_ROUTES:
        return await handler(request)
    app = request.app
    settings = app[SETTINGS]
    token = bearer_token(request.headers.get("Authorization"))
    keys = settings.api_keys
    address = client_address(
        request.remote, request.headers.getall("X-Forwarded-For", []), settings.trusted_proxies
    )
    if keys and not key_is_valid(token, keys):
        app[METRICS].shed(reason="unauthorized")
        await app[LIMITER].reserve(client_identity(None, address), 1)  # guessing keys costs
        reason = "missing" if token is None else "invalid"
        raise Unauthorized(
            f"{reason} API key: send the header Authorization: Bearer <key>", headers=CHALLENGE
        )
    request[CLIENT] = client_identity(token if keys else None, address)
    return await handler(request)
