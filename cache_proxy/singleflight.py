"""Single-flight: identical texts in flight at the same moment are computed once.

The first request to miss a text owns its computation; concurrent requests for
the same text wait on the owner's future instead of sending it to Triton again.
An answer can be settled before it is stored (its waiters, and requests that
claim it meanwhile, get it at once) and released once stored: the key is never
free while its answer is neither stored nor in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def has_answer(future: asyncio.Future[T]) -> bool:
    """The future holds an answer (not an error, not cancelled, not pending)."""
    return future.done() and not future.cancelled() and future.exception() is None


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}

    def claim(
        self, keys: Sequence[str], stale: Callable[[T], bool] = lambda answer: False
    ) -> tuple[dict[str, asyncio.Future[T]], dict[str, asyncio.Future[T]]]:
        """(the keys the caller must compute now, with its claims; the futures
        of keys others compute). A key settled with a `stale` answer is the
        caller's to compute again: the earlier owner's `release` and `fail`
        leave the new claim alone."""
        mine: dict[str, asyncio.Future[T]] = {}
        theirs: dict[str, asyncio.Future[T]] = {}
        loop = asyncio.get_running_loop()
        for key in keys:
            future = self._inflight.get(key)
            if future is None or (has_answer(future) and stale(future.result())):
                self._inflight[key] = mine[key] = loop.create_future()
            else:
                theirs[key] = future
        return mine, theirs

    def resolve(self, results: Mapping[str, T]) -> None:
        """Settle and release at once (answers already stored)."""
        self.settle(results)
        self.release(results)

    def settle(self, results: Mapping[str, T]) -> None:
        """Hand answers to their waiters; the keys stay claimed until released."""
        for key, value in results.items():
            future = self._inflight.get(key)
            if future is not None and not future.done():
                future.set_result(value)

    def release(self, results: Mapping[str, T]) -> None:
        """Free the keys settled with these very answers (a key failed and
        claimed again since is another computation's)."""
        for key, value in results.items():
            future = self._inflight.get(key)
            if future is not None and has_answer(future) and future.result() is value:
                del self._inflight[key]

    def fail(self, claimed: Mapping[str, asyncio.Future[T]], error: BaseException) -> None:
        """Release the `claimed` keys (as `claim` returned them) that will not
        be computed; their waiters get `error`. Settled keys are left to
        `release` (their answers exist), and so is a key claimed anew since."""
        for key, claim in claimed.items():
            future = self._inflight.get(key)
            if future is claim and not future.done():
                del self._inflight[key]
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning if nobody waits

    def __len__(self) -> int:
        return len(self._inflight)
