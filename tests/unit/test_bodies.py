"""The per-replica budget of request body bytes (pure rules)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from cache_proxy.bodies import BodyBudget, body_bound
from cache_proxy.errors import Overloaded
from cache_proxy.metrics import Metrics


@pytest.mark.parametrize(
    ("headers", "bound"),
    [
        ({"Content-Length": "300"}, 300),
        ({"Content-Length": "300", "Content-Encoding": "identity"}, 300),
        ({"Content-Length": "300", "Content-Encoding": "gzip"}, 4096),  # may inflate
        ({"Transfer-Encoding": "chunked"}, 4096),  # no length said
        ({"Content-Length": "99999"}, 4096),  # refused at the body limit anyway
    ],
)
def test_a_body_is_bounded_by_what_it_can_inflate_to(headers: dict[str, str], bound: int) -> None:
    assert body_bound(make_mocked_request("POST", "/predict", headers=headers), 4096) == bound


def test_large_bodies_leave_the_last_eighth_to_small_ones() -> None:
    budget = BodyBudget(limit=8000, max_body_bytes=1600, metrics=Metrics())  # small: <= 100
    held = [budget.hold(1000) for _ in range(7)]  # large: up to 8000 - 1000
    with pytest.raises(Overloaded, match="request bodies"):
        budget.hold(101)
    small = [budget.hold(100) for _ in range(10)]  # the reserve
    with pytest.raises(Overloaded):
        budget.hold(1)
    assert budget.metrics.rejections.labels("body_budget")._value.get() == 2
    for each in held + small:
        each.__exit__(None, None, None)
    assert budget.held == 0


def test_a_decoded_body_holds_its_size_and_a_lone_body_always_fits() -> None:
    budget = BodyBudget(limit=100, max_body_bytes=1000, metrics=Metrics())
    with budget.hold(1000) as held:  # more than the whole budget, but alone
        held.resize(40)
        assert budget.held == 40
        held.resize(500)  # never grows past what it held
        assert budget.held == 40
    assert budget.held == 0
