"""Single-flight: identical texts in flight at the same moment are computed once.

The first request to miss a text owns its computation; concurrent requests for
the same text wait on the owner's future instead of sending it to Triton again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}

    def claim(self, keys: Sequence[str]) -> tuple[list[str], dict[str, asyncio.Future[T]]]:
        """(keys the caller must compute now, futures of keys others compute)."""
        mine: list[str] = []
        theirs: dict[str, asyncio.Future[T]] = {}
        loop = asyncio.get_running_loop()
        for key in keys:
            future = self._inflight.get(key)
            if future is None:
                self._inflight[key] = loop.create_future()
                mine.append(key)
            else:
                theirs[key] = future
        return mine, theirs

    def resolve(self, results: Mapping[str, T]) -> None:
        for key, value in results.items():
            future = self._inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_result(value)

    def fail(self, keys: Iterable[str], error: BaseException) -> None:
        """Release keys that will not be computed; their waiters get `error`."""
        for key in keys:
            future = self._inflight.pop(key, None)
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning if nobody waits

    def __len__(self) -> int:
        return len(self._inflight)
