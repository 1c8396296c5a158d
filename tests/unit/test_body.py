"""Request bodies are decoded within limits; every bad encoding is a 4xx."""

from __future__ import annotations

import gzip
import zlib

import pytest

from cache_proxy.body import content_encoding, decompress
from cache_proxy.errors import MalformedRequest, PayloadTooLarge, UnsupportedEncoding

BODY = b'{"text": ["I love you!"]}'


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("", BODY),
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
        ("deflate", zlib.compress(BODY, wbits=-zlib.MAX_WBITS)),  # raw deflate, as some send it
    ],
)
def test_decodes(encoding: str, data: bytes) -> None:
    assert decompress(data, encoding, 1000) == BODY


@pytest.mark.parametrize(
    ("header", "encoding"),
    [("", ""), ("identity", ""), ("GZIP", "gzip"), (" gzip ", "gzip"), ("deflate", "deflate"),
     ("x-gzip", "x-gzip")],
)  # fmt: skip
def test_supported_encodings(header: str, encoding: str) -> None:
    assert content_encoding(header) == encoding
    sent = {"": BODY, "deflate": zlib.compress(BODY)}.get(encoding) or gzip.compress(BODY)
    assert decompress(sent, content_encoding(header), 1000) == BODY  # the value is usable


@pytest.mark.parametrize("header", ["br", "zstd", "compress", "gzip, gzip", "foo"])
def test_unsupported_encoding_is_415(header: str) -> None:
    with pytest.raises(UnsupportedEncoding) as caught:
        content_encoding(header)
    assert caught.value.status == 415


def test_a_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"a" * (64 << 20))  # 64 MiB in ~64 KB
    with pytest.raises(PayloadTooLarge):
        decompress(bomb, "gzip", 1 << 20)


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(BODY)[:12]),  # cut off half way
        ("deflate", b"not deflate"),
        ("deflate", zlib.compress(BODY)[:8]),
    ],
)
def test_broken_or_truncated_streams_are_400(encoding: str, data: bytes) -> None:
    with pytest.raises(MalformedRequest):
        decompress(data, encoding, 1000)
