"""Request bodies held at once, bounded per replica, so that no mix of valid
requests can push the proxy past its memory limit.

A /predict request holds, from before its body is read until its answer is
sent, the most its body can occupy: its Content-Length when sent as is, else
the body limit (a compressed or chunked body may inflate to it); once decoded
it holds the decoded size. Each held body byte costs a few bytes of memory
(the raw and decoded bytes, then the parsed strings at up to 4 bytes a
character), so a budget of body bytes bounds the memory requests take. A body
that does not fit is refused at once (429 overloaded, with Retry-After) before
it is read: waiting would hold its connection and its memory anyway. Large
bodies (over a sixteenth of the body limit) never take the budget's last
eighth, so small requests still pass while large ones fill it.
"""

from __future__ import annotations

from aiohttp import web

from cache_proxy.errors import Overloaded
from cache_proxy.metrics import Metrics

SMALL_SHARE = 16  # a body up to max_body_bytes / this is small
RESERVED_SHARE = 8  # the budget's share that only small bodies may take


def body_bound(request: web.BaseRequest, max_body_bytes: int) -> int:
    """The most this request's body can occupy once decoded."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity") and request.content_length is not None:
        return min(request.content_length, max_body_bytes)
    return max_body_bytes


class BodyBudget:
    def __init__(self, limit: int, max_body_bytes: int, metrics: Metrics) -> None:
        self.limit = limit
        self.small = max_body_bytes // SMALL_SHARE
        self.metrics = metrics
        self.held = 0

    def fits(self, size: int) -> bool:
        room = self.limit - (self.limit // RESERVED_SHARE if size > self.small else 0)
        return self.held == 0 or self.held + size <= room

    def hold(self, size: int) -> Held:
        """Hold `size` bytes until the returned Held is released; raises
        Overloaded when they do not fit."""
        if not self.fits(size):
            self.metrics.shed(reason="body_budget")
            raise Overloaded(
                f"this proxy already holds {self.held} bytes of request bodies (at most "
                f"{self.limit}); retry shortly"
            )
        self._add(size)
        return Held(self, size)

    def _add(self, delta: int) -> None:
        self.held += delta
        self.metrics.body_bytes_held.set(self.held)


class Held:
    """Bytes held for one request: a context manager that gives them back."""

    def __init__(self, budget: BodyBudget, size: int) -> None:
        self.budget = budget
        self.size = size

    def resize(self, size: int) -> None:
        """The body is decoded: hold what it takes, never more than held."""
        size = min(size, self.size)
        self.budget._add(size - self.size)
        self.size = size

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.budget._add(-self.size)
        self.size = 0
