"""The proxy's one error taxonomy; the middleware turns these into JSON.

Each class's docstring says when it happens: the README's errors table
(`python -m cache_proxy.errors`) and the OpenAPI responses are generated from
these classes, so the list lives here only.
"""

from __future__ import annotations

import inspect


class ApiError(Exception):
    """A bug in the proxy (logged with its traceback); the process stays up."""

    status = 500
    error_type = "internal"
    retry_after: float | None = None  # seconds, sent as Retry-After; None: no header

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        """The JSON body of every error answer."""
        return {"error": self.message, "error_type": self.error_type}

    def copy(self) -> ApiError:
        """The same error as a new object (an exception raised to several
        requests must not be shared: handlers add headers to theirs)."""
        twin = type(self)(self.message, retry_after=self.retry_after, headers=dict(self.headers))
        twin.status, twin.error_type = self.status, self.error_type
        return twin


class MalformedRequest(ApiError):
    """Empty body, not JSON, not UTF-8, nested too deeply, a repeated key, broken
    or truncated gzip/deflate data, or malformed HTTP (bad chunked encoding, a
    header line over 8 KiB)."""

    status = 400
    error_type = "malformed_request"


class Unauthorized(ApiError):
    """`API_KEYS` is set and the Bearer key is missing or wrong (with
    `WWW-Authenticate`)."""

    status = 401
    error_type = "unauthorized"


class NotFound(ApiError):
    """Unknown route."""

    status = 404
    error_type = "not_found"


class MethodNotAllowed(ApiError):
    """Wrong method (with `Allow`)."""

    status = 405
    error_type = "method_not_allowed"


class RequestTimeout(ApiError):
    """The body did not arrive within `BODY_TIMEOUT_SECONDS`."""

    status = 408
    error_type = "request_timeout"


class PayloadTooLarge(ApiError):
    """Body over `MAX_BODY_BYTES` (as sent or decoded), more than `MAX_TEXTS`
    texts, a text over `MAX_TEXT_CHARS` characters, a text over 512 tokens
    with `"long_texts": "reject"` or over `MAX_WINDOWS` windows with
    `"windows"`, or cache misses costing more than the model computes within
    `REQUEST_TIMEOUT_SECONDS` at its learned rate (refused before any work;
    the message names the limit or the texts)."""

    status = 413
    error_type = "payload_too_large"


class UnsupportedEncoding(ApiError):
    """A `Content-Encoding` other than gzip, deflate or identity."""

    status = 415
    error_type = "unsupported_encoding"


class ValidationFailed(ApiError):
    """JSON, but not an object, `text` missing, not a list, or holding a
    non-string (null, number, list, object) or a lone surrogate."""

    status = 422
    error_type = "validation"


class Overloaded(ApiError):
    """Work waited past `ADMISSION_TIMEOUT_SECONDS` or was shed from a full
    queue, Triton's queue policy refused it (full or timed out; opt-in),
    `MAX_BODY_BYTES_IN_FLIGHT` of request bodies are held, or
    `MAX_CONNECTIONS` are all busy (with `Retry-After`)."""

    status = 429
    error_type = "overloaded"
    retry_after = 1.0


class RateLimited(ApiError):
    """The client's token bucket is empty (`RATE_LIMIT_*`; with `Retry-After`
    and `X-RateLimit-*`)."""

    status = 429
    error_type = "rate_limited"


class ClientClosed(ApiError):
    """The client hung up before its request was read or answered: logged and
    counted, never sent."""

    status = 499
    error_type = "client_closed"


class BackendFailed(ApiError):
    """Triton answered with an unexpected error (its text is in the proxy log,
    not the answer)."""

    status = 502
    error_type = "backend_error"


class BackendUnavailable(ApiError):
    """Triton down, not ready or past the deadline (with `Retry-After`)."""

    status = 503
    error_type = "backend_unavailable"
    retry_after = 1.0


def taxonomy() -> list[type[ApiError]]:
    """Every error class, by status (ApiError itself, the 500, last)."""
    return [*sorted(ApiError.__subclasses__(), key=lambda c: c.status), ApiError]


def when(error: type[ApiError]) -> str:
    return " ".join(inspect.getdoc(error).split())  # type: ignore[union-attr]


def markdown_table() -> str:
    lines = ["| status | `error_type` | when |", "|---|---|---|"]
    lines += [f"| {e.status} | `{e.error_type}` | {when(e)} |" for e in taxonomy()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
