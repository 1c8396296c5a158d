"""SingleFlight: one computation per key in flight; waiters never hang."""

from __future__ import annotations

import asyncio
import time

import pytest

from cache_proxy.errors import BackendUnavailable
from cache_proxy.predictor import Outcome, wait_for_others
from cache_proxy.singleflight import SingleFlight
from cache_proxy.tracker import ModelIdentity


async def test_second_claim_waits_for_the_first() -> None:
    flights: SingleFlight[int] = SingleFlight()
    mine, theirs = flights.claim(["a", "b"])
    assert (list(mine), theirs) == (["a", "b"], {})
    mine2, theirs2 = flights.claim(["b", "c"])
    assert list(mine2) == ["c"] and list(theirs2) == ["b"]
    flights.resolve({"a": 1, "b": 2})
    assert await theirs2["b"] == 2
    flights.resolve({"c": 3})
    assert len(flights) == 0
    assert list(flights.claim(["a"])[0]) == ["a"]  # done keys can be claimed again


async def test_a_settled_key_answers_at_once_and_stays_claimed_until_released() -> None:
    flights: SingleFlight[list[int]] = SingleFlight()
    claimed, _ = flights.claim(["a", "b"])
    answer = {"a": [1]}
    flights.settle(answer)
    mine, theirs = flights.claim(["a"])
    assert not mine and theirs["a"].done() and await theirs["a"] == [1]
    flights.fail(claimed, BackendUnavailable("the request failed"))  # a: answered
    assert list(flights.claim(["a", "b"])[0]) == ["b"]
    flights.release({"a": [1]})  # an equal answer, not this one: still claimed
    assert not flights.claim(["a"])[0]
    flights.release(answer)
    assert list(flights.claim(["a"])[0]) == ["a"]
    flights.release(answer)  # claimed again since: another computation's
    assert not flights.claim(["a"])[0]


async def test_a_key_settled_with_a_stale_answer_is_claimed_anew() -> None:
    flights: SingleFlight[str] = SingleFlight()
    first, _ = flights.claim(["a", "b", "c"])
    old = {"a": "old", "b": "old"}
    flights.settle(old)
    mine, theirs = flights.claim(["a", "b"], stale=lambda answer: answer == "old")
    assert (list(mine), theirs) == (["a", "b"], {})
    assert not flights.claim(["a"], stale=lambda answer: True)[0]  # pending: never stale
    _, waiting = flights.claim(["a"])
    flights.fail(first, BackendUnavailable("the first owner failed"))  # c only
    flights.release(old)  # the old answers are stored
    assert list(flights.claim(["a", "b", "c"])[0]) == ["c"]  # a, b: the new claims stay
    assert not waiting["a"].done()
    flights.resolve({"a": "new", "b": "new"})
    assert await waiting["a"] == "new"


async def test_failure_reaches_waiters_and_frees_keys() -> None:
    flights: SingleFlight[int] = SingleFlight()
    mine, _ = flights.claim(["x"])
    _, theirs = flights.claim(["x"])
    flights.fail(mine, BackendUnavailable("triton down"))
    with pytest.raises(BackendUnavailable, match="triton down"):
        await theirs["x"]
    assert len(flights) == 0


async def test_a_waiter_cancelled_or_out_of_time_does_not_cancel_the_owner() -> None:
    """A request that stops waiting (its client left, or its deadline passed)
    leaves the text's answer to the owner and to every other waiter."""
    flights: SingleFlight[Outcome] = SingleFlight()
    flights.claim(["k"])
    _, theirs = flights.claim(["k"])
    cancelled = asyncio.create_task(wait_for_others(theirs, deadline=time.monotonic() + 5))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(BackendUnavailable, match="deadline"):
        await wait_for_others(theirs, deadline=time.monotonic() + 0.01)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not theirs["k"].done()
    _, still_waiting = flights.claim(["k"])
    answer = Outcome([0.1, 0.9], ModelIdentity("f", ("N", "P")), cached=False)
    flights.resolve({"k": answer})
    assert await wait_for_others(still_waiting, deadline=time.monotonic() + 5) == {"k": answer}


async def test_each_waiter_gets_its_own_error_object() -> None:
    # Handlers add headers (X-RateLimit-*) to the error they raise: a shared
    # object would carry one client's headers to another.
    flights: SingleFlight[Outcome] = SingleFlight()
    mine, _ = flights.claim(["t"])
    _, theirs = flights.claim(["t"])
    owner_error = BackendUnavailable("the model is unavailable", retry_after=1)
    flights.fail(mine, owner_error)
    with pytest.raises(BackendUnavailable) as caught:
        await wait_for_others(theirs, deadline=time.monotonic() + 5)
    assert caught.value is not owner_error
    assert (caught.value.message, caught.value.retry_after) == (owner_error.message, 1)
    caught.value.headers["X-RateLimit-Remaining"] = "7"
    assert owner_error.headers == {}
