"""The proxy's one error taxonomy; the middleware turns these into JSON."""

from __future__ import annotations


class ApiError(Exception):
    """An error with an HTTP status and a stable machine-readable type."""

    status = 500
    error_type = "internal"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.headers = headers or {}

    def copy(self) -> ApiError:
        """The same error as a new object (an exception raised to several
        requests must not be shared: handlers add headers to theirs)."""
        twin = type(self)(self.message, retry_after=self.retry_after, headers=dict(self.headers))
        twin.status, twin.error_type = self.status, self.error_type
        return twin


class MalformedRequest(ApiError):
    """The body is not JSON (or not UTF-8, nested too deeply, has a duplicate
    key, or its compression is broken)."""

    status = 400
    error_type = "malformed_request"


class ValidationFailed(ApiError):
    """JSON, but not the shape `{"text": [str, ...]}`."""

    status = 422
    error_type = "validation"


class RequestTimeout(ApiError):
    """The request body did not arrive within BODY_TIMEOUT_SECONDS."""

    status = 408
    error_type = "request_timeout"


class UnsupportedEncoding(ApiError):
    """A Content-Encoding other than gzip, deflate or identity."""

    status = 415
    error_type = "unsupported_encoding"


class ClientClosed(ApiError):
    """The client went away before its request was read or answered; logged
    and counted (status 499, as nginx does), never sent."""

    status = 499
    error_type = "client_closed"


class Unauthorized(ApiError):
    """API keys are configured and the request has no valid `Bearer` key."""

    status = 401
    error_type = "unauthorized"


class PayloadTooLarge(ApiError):
    """Body over MAX_BODY_BYTES (compressed or not), more than MAX_TEXTS
    texts, or a text over MAX_TEXT_CHARS."""

    status = 413
    error_type = "payload_too_large"


class NotFound(ApiError):
    status = 404
    error_type = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    error_type = "method_not_allowed"


class Overloaded(ApiError):
    """Too much work queued for the model, or too many connections; retry
    after a moment."""

    status = 429
    error_type = "overloaded"


class RateLimited(ApiError):
    """This client used up its token bucket (RATE_LIMIT_*); retry after a moment."""

    status = 429
    error_type = "rate_limited"


class BackendUnavailable(ApiError):
    """Triton is down, not ready, or did not answer within the deadline."""

    status = 503
    error_type = "backend_unavailable"


class BackendFailed(ApiError):
    """Triton answered with an error the proxy cannot attribute to the client."""

    status = 502
    error_type = "backend_error"
