"""All proxy settings, read from the environment in one place."""

from __future__ import annotations

import ast
import functools
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Every field has a default; the env var is the field name upper-cased."""

    proxy_host: str = "127.0.0.1"
    """Address the proxy listens on."""
    proxy_port: int = 8080
    """Port the proxy listens on."""
    triton_url: str = "127.0.0.1:8000"
    """Triton HTTP endpoint, host:port (no scheme)."""
    triton_model: str = "distilbert_sst2"
    """Model name in the Triton repository."""
    triton_max_batch: int = 64
    """Rows per Triton request; keep <= the model's max_batch_size."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Cache location: redis://[:password@]host:port/db, or rediss:// for TLS
    (CA via ?ssl_ca_certs=/path/ca.crt); empty disables the cache."""
    redis_cluster: bool = False
    """REDIS_URL names one node of a Redis Cluster; keys spread over all shards."""
    redis_timeout_seconds: float = 0.25
    """Connect/read timeout for one Redis call; past it the cache is bypassed."""
    redis_retry_seconds: float = 1.0
    """After a Redis failure, bypass the cache this long before trying again."""
    cache_ttl_seconds: int = 7 * 24 * 3600
    """How long a cached prediction lives (0 = no expiry)."""
    max_body_bytes: int = 1024 * 1024
    """Largest accepted request body; larger gets 413."""
    max_texts: int = 256
    """Most texts in one request; more gets 413."""
    max_inflight_texts: int = 256
    """Texts in flight to Triton at once; past it, 429 with Retry-After."""
    request_timeout_seconds: float = 10.0
    """Deadline for one /predict request, passed on to Triton."""
    model_refresh_seconds: float = 1.0
    """Re-read the served model's identity from Triton when no inference did
    for this long: after a model change, cached answers of the old model stop
    within this bound (a request with a miss switches at once)."""
    shutdown_delay_seconds: float = 0.0
    """On SIGTERM, keep serving this long with readiness failing (load balancers
    notice), then close the listener. Kubernetes: a few seconds."""
    shutdown_timeout_seconds: float = 10.0
    """After the listener closes, how long in-flight requests may take to finish;
    the process exits within delay + timeout of SIGTERM."""
    api_keys: str = ""
    """Comma-separated API keys; when set, /predict and /model need
    `Authorization: Bearer <key>` (401 otherwise). Empty: no authentication."""
    rate_limit_per_second: float = 0.0
    """Per-client token bucket refill rate, requests/s, kept in Redis so all
    replicas share it (429 past it). 0: no rate limit."""
    rate_limit_burst: int = 10
    """Token bucket size: requests a client may send at once."""
    trust_x_forwarded_for: bool = False
    """Rate-limit anonymous clients by the first X-Forwarded-For address (only
    behind a proxy that sets it) instead of the peer address."""
    log_level: str = "INFO"
    """Python logging level."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: os.environ); bad values raise ValueError."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(field.name.upper())
            if raw is None:
                continue
            kind = type(getattr(cls, field.name))
            try:
                values[field.name] = parse_bool(raw) if kind is bool else kind(raw)
            except ValueError:
                raise ValueError(
                    f"{field.name.upper()}={raw!r} is not a valid {kind.__name__}"
                ) from None
        return cls(**values)  # type: ignore[arg-type]


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(raw)


@functools.cache  # Settings is frozen: parsed once, not on every request
def api_key_set(settings: Settings) -> frozenset[str]:
    """The accepted API keys (empty: authentication is off)."""
    return frozenset(k.strip() for k in settings.api_keys.split(",") if k.strip())


def describe() -> list[tuple[str, str, str]]:
    """(ENV_VAR, default, meaning) for every setting, from the docstrings above."""
    tree = ast.parse(Path(__file__).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings").body
    rows = []
    for node, following in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = ""
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                doc = str(following.value.value)
            default = getattr(Settings, node.target.id)
            rows.append((node.target.id.upper(), show_default(default), " ".join(str(doc).split())))
    return rows


def show_default(value: object) -> str:
    if isinstance(value, bool):
        return "`false`" if not value else "`true`"
    return f"`{value}`" if value != "" else "(empty)"


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in describe()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
