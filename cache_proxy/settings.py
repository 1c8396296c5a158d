"""All proxy settings, read from the environment in one place (pydantic-settings)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _empty_is_false(raw: object) -> object:
    return False if raw == "" else raw


def _comma_separated(raw: object) -> object:
    """`a, b,,c` -> ("a", "b", "c"); anything else as given."""
    if isinstance(raw, str):
        return tuple(entry.strip() for entry in raw.split(",") if entry.strip())
    return raw


def _networks(raw: object) -> object:
    """Addresses or CIDRs, host bits allowed (10.0.0.1/8 is 10.0.0.0/8)."""
    entries = _comma_separated(raw)
    if not isinstance(entries, tuple):
        return entries
    return tuple(
        ipaddress.ip_network(e, strict=False) if isinstance(e, str) else e for e in entries
    )


Flag = Annotated[bool, BeforeValidator(_empty_is_false)]
"""A boolean setting: 1/true/yes/on or 0/false/no/off; empty is false."""
Keys = Annotated[frozenset[str], NoDecode, BeforeValidator(_comma_separated)]
"""Comma-separated; blanks ignored."""
Networks = Annotated[tuple[IPNetwork, ...], NoDecode, BeforeValidator(_networks)]
"""Comma-separated addresses or CIDRs; a bad entry fails at load."""


class Settings(BaseSettings):
    """Every field has a default; the env var is the field name upper-cased.

    pydantic-settings reads the environment and checks the types (a bad
    value fails at load, naming the variable); each field's docstring is
    what `describe()` turns into the README's settings table.
    """

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, case_sensitive=False
    )

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
    redis_password: str = ""
    """Password for REDIS_URL's server when the URL holds none (Kubernetes:
    from a Secret, beside a URL in a ConfigMap); never logged."""
    redis_cluster: Flag = False
    """REDIS_URL names one node of a Redis Cluster; keys spread over all shards."""
    redis_timeout_seconds: float = 0.25
    """Connect/read timeout for one Redis call; past it the cache is bypassed."""
    redis_retry_seconds: float = 1.0
    """After a Redis failure, bypass the cache this long before trying again."""
    cache_ttl_seconds: int = 7 * 24 * 3600
    """How long a cached prediction lives (0 = no expiry)."""
    max_body_bytes: int = 1024 * 1024
    """Largest accepted request body, before and after decompression; larger
    gets 413."""
    max_body_bytes_in_flight: int = 16 * 1024 * 1024
    """Request body bytes this replica holds at once (a body counts its
    Content-Length, or MAX_BODY_BYTES when compressed or chunked, until
    decoded), from before it is read until its answer is sent; past it 429
    overloaded. A body byte can cost about 6 bytes of memory (raw, decoded,
    parsed strings): 16 MiB keeps requests near 100 MiB of a 256 MiB pod."""
    max_texts: int = 256
    """Most texts in one request; more gets 413."""
    max_text_chars: int = 20_000
    """Longest accepted text, in characters; longer gets 413. The model reads
    a text's first 512 tokens (about 2,500 characters of English) exactly."""
    window_overlap_tokens: int = Field(default=64, ge=0, le=256)
    """With `"long_texts": "windows"`, the tokens consecutive windows of a
    long text share (each window reads at most 502)."""
    max_windows: int = Field(default=16, ge=1)
    """With `"long_texts": "windows"`, the most windows one text may take;
    a longer text gets 413."""
    admission_target_seconds: float = 0.1
    """Work in flight to Triton is sized to take about this long: the budget is
    the model's learned rate (cost units per second, measured from its own
    answers) times this, so a short request waits about this long plus at most
    one 512-token forward already running, on any CPU. 0: a fixed budget of
    MAX_INFLIGHT_COST."""
    min_inflight_cost: int = 64
    """Smallest in-flight budget in cost units, and the budget until the rate
    is learned. A text dearer than the budget runs alone."""
    max_inflight_cost: int = 8192
    """Largest in-flight budget in cost units (the fixed budget when
    ADMISSION_TARGET_SECONDS is 0). Chunks hold at most half the budget."""
    max_queued_cost: int = 65_536
    """Most cost units waiting for admission; the queue also holds no more than
    the model answers within ADMISSION_TIMEOUT_SECONDS at its learned rate.
    Past that, work is shed (429 overloaded) from the client with the most
    queued, or within the newcomer's client from a request much dearer than
    the newcomer's, else the newcomer is refused (cache_proxy/README.md)."""
    admission_timeout_seconds: float = 5.0
    """Longest a chunk waits for admission; past it 429 overloaded."""
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
    api_keys: Keys = Field(default=frozenset(), repr=False)
    """Comma-separated API keys; when set, /predict and /model need
    `Authorization: Bearer <key>` (401 otherwise). Empty: no authentication."""
    rate_limit_per_second: float = 0.0
    """Per-client token bucket refill rate in cost units/s, kept in Redis so
    all replicas share it (429 past it). A request reserves 1 plus its texts'
    cost before it runs and pays 1 plus the cost it sent to the model (cache
    hits refunded; work sent for a request that then failed is paid); a
    refused API key costs its address 1. 0: no rate limit."""
    rate_limit_redis_url: str = ""
    """Redis for the rate limit's buckets, when not REDIS_URL's (empty). The
    manifests give them a Redis of their own that never evicts, so no flood
    of cache writes can evict a bucket and forgive a client's debt. Same
    password (REDIS_PASSWORD); not a cluster."""
    rate_limit_burst: int = 2048
    """Token bucket size in cost units; a request that may cost more than the
    bucket holds passes only when it is full, and may leave it in debt."""
    trusted_proxies: Networks = ()
    """Comma-separated addresses or CIDRs of proxies in front of this one. When
    the peer is one of them, the client is the rightmost X-Forwarded-For
    address that is not (over every X-Forwarded-For header; ip:port hops read
    as ip; IPv6 clients grouped by /64); otherwise X-Forwarded-For is ignored."""
    body_timeout_seconds: float = 10.0
    """Longest a request body may take to arrive; past it 408."""
    keepalive_timeout_seconds: float = 15.0
    """Idle keep-alive connections close after this; it also bounds how long
    a request's headers may take to arrive."""
    max_connections: int = 1000
    """Open client connections at most; at the cap the longest-idle one is
    closed for a newcomer, or the newcomer gets 429 if none is idle."""
    ready_timeout_seconds: float = 1.0
    """How long /health/ready waits for Triton before reporting it unavailable."""
    memory_trim_above_mib: int = Field(default=32, ge=0)
    """When the resident set grew by more than this over its lowest, the memory
    malloc holds free is given back to the system (glibc `malloc_trim`,
    checked every second): a burst of large requests must not leave the proxy
    near its pod's memory limit for the next one (cache_proxy/memory.py). 0: never."""
    log_level: str = "INFO"
    """Python logging level."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment, over it `env` (tests); a bad value
        raises ValueError naming its variable."""
        env = env or {}
        given: dict[str, Any] = {n: env[n.upper()] for n in cls.model_fields if n.upper() in env}
        try:
            return cls(**given)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0])
            shown = f"={given[name]!r}" if name in given else ""
            raise ValueError(f"{name.upper()}{shown}: {error['msg']}") from None


SECRET_PARAMETERS = frozenset({"password", "pass", "pwd", "token", "secret"})


def redacted(url: str) -> str:
    """`url` with any password (in the address or as a query parameter, as
    redis-py accepts `?password=`) replaced by ***, for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        parts = parts._replace(netloc=netloc)
    query = [
        (name, "***" if name.lower() in SECRET_PARAMETERS else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*/")))


def describe() -> list[tuple[str, str, str]]:
    """(ENV_VAR, default, meaning) for every setting, from the docstrings above."""
    return [
        (name.upper(), show_default(field.default), " ".join((field.description or "").split()))
        for name, field in Settings.model_fields.items()
    ]


def show_default(value: object) -> str:
    if isinstance(value, frozenset | tuple) and not value:
        return "(empty)"
    if isinstance(value, bool):
        return "`false`" if not value else "`true`"
    return f"`{value}`" if value != "" else "(empty)"


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in describe()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
