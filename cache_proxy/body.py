"""Read a request body within limits: size (before and after decompression),
time, and the encodings we decode ourselves (aiohttp's auto-decompression is
off, so every failure here is one of our 4xx errors, never a 500)."""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import web

from cache_proxy.errors import (
    ClientClosed,
    MalformedRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedEncoding,
)

# zlib window bits: gzip wrapper; zlib wrapper (HTTP "deflate"); raw deflate,
# which some clients send as "deflate" too.
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
RAW_DEFLATE = -zlib.MAX_WBITS


async def read_body(request: web.Request, max_bytes: int, max_wait: float) -> bytes:
    """The decoded body, or the ApiError that says what is wrong with it."""
    encoding = content_encoding(request.headers.get("Content-Encoding", ""))
    try:
        async with asyncio.timeout(max_wait):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {max_wait:g}s") from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes") from None
    except ConnectionError:  # the client went away mid-upload
        raise ClientClosed("client closed the connection while sending the body") from None
    return decompress(raw, encoding, max_bytes)


def content_encoding(header: str) -> str:
    """The one encoding we will decode ('' for none); 415 for anything else."""
    encoding = header.strip().lower()
    if encoding in ("", "identity") or encoding in WBITS:
        return "" if encoding == "identity" else encoding
    raise UnsupportedEncoding(
        f"Content-Encoding {header.strip()!r} is not supported; use gzip, deflate or none"
    )


def decompress(data: bytes, encoding: str, max_bytes: int) -> bytes:
    """Inflate at most `max_bytes` (a bomb stops there with 413); a broken or
    truncated stream is a 400."""
    if not encoding:
        return data
    try:
        return inflate(data, WBITS[encoding], max_bytes)
    except zlib.error:
        if encoding != "deflate":
            raise MalformedRequest(f"the body is not valid {encoding} data") from None
    try:
        return inflate(data, RAW_DEFLATE, max_bytes)
    except zlib.error:
        raise MalformedRequest("the body is not valid deflate data") from None


def inflate(data: bytes, wbits: int, max_bytes: int) -> bytes:
    decompressor = zlib.decompressobj(wbits)
    out = decompressor.decompress(data, max_bytes + 1)
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"request body over {max_bytes} bytes once decompressed")
    if not decompressor.eof:
        raise MalformedRequest("the compressed body is truncated")
    return out
