"""InflightLimit: admits within the bound, rejects past it, never starves."""

from __future__ import annotations

import pytest

from cache_proxy.backpressure import InflightLimit
from cache_proxy.errors import Overloaded
from cache_proxy.metrics import Metrics


def test_admits_within_the_limit_and_rejects_past_it() -> None:
    limit = InflightLimit(4, Metrics())
    with limit.admit(3):
        with limit.admit(1):
            assert limit.current == 4
        with pytest.raises(Overloaded) as caught, limit.admit(2):
            pass
        assert caught.value.status == 429 and caught.value.retry_after == 1.0
    assert limit.current == 0


def test_an_oversized_request_runs_alone() -> None:
    limit = InflightLimit(4, Metrics())
    with limit.admit(10), pytest.raises(Overloaded), limit.admit(1):
        pass
    with limit.admit(1):
        pass


def test_the_budget_comes_back_after_an_error() -> None:
    limit = InflightLimit(4, Metrics())
    with pytest.raises(RuntimeError), limit.admit(4):
        raise RuntimeError("triton failed")
    assert limit.current == 0
