"""Launch a real redis-server for local runs and tests."""

from __future__ import annotations

import shutil
from pathlib import Path


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server not found: run `make install` (apt-get install redis-server)"
        )
    return path


def redis_command(port: int, workdir: Path, *extra: str, host: str = "127.0.0.1") -> list[str]:
    """An in-memory cache: no persistence, bounded memory, LRU eviction; `extra`
    options are appended (TLS, cluster mode)."""
    return [
        redis_binary(),
        "--bind", host,
        "--port", str(port),
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "no",
        "--maxmemory", "256mb",
        "--maxmemory-policy", "allkeys-lru",
        *extra,
    ]  # fmt: skip
