"""API-key parsing, client identity and rate-limit decisions (pure functions)."""

from __future__ import annotations

import pytest

from cache_proxy.guard import bearer_token, client_identity, key_is_valid
from cache_proxy.ratelimit import decide
from cache_proxy.settings import Settings, api_key_set


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_key_validity() -> None:
    keys = api_key_set(Settings(api_keys=" k1 , k2,, "))
    assert keys == {"k1", "k2"}
    assert key_is_valid("k2", keys)
    assert not key_is_valid("k3", keys)
    assert not key_is_valid(None, keys)
    assert not key_is_valid("k1", frozenset())


def test_client_identity_prefers_the_key_and_trusts_forwarded_only_when_told() -> None:
    by_key = client_identity("secret", "10.0.0.1", None, False)
    assert by_key.startswith("key:")
    assert "secret" not in by_key
    assert client_identity(None, "10.0.0.1", "1.2.3.4, 10.0.0.9", False) == "ip:10.0.0.1"
    assert client_identity(None, "10.0.0.1", "1.2.3.4, 10.0.0.9", True) == "ip:1.2.3.4"
    assert client_identity(None, None, None, True) == "ip:unknown"


def test_decision_headers() -> None:
    allowed = decide(1, 2.6, 0.0, rate=2.0, burst=5)
    assert allowed.allowed
    assert allowed.headers() == {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Reset": "2",  # (5 - 2.6) / 2 = 1.2 s, rounded up
    }
    refused = decide(0, 0.4, 0.3, rate=2.0, burst=5)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after == pytest.approx(0.3)


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("0", False), ("", False)])
def test_bool_settings(raw: str, value: bool) -> None:
    assert Settings.from_env({"TRUST_X_FORWARDED_FOR": raw}).trust_x_forwarded_for is value


def test_bad_bool_setting_is_an_error() -> None:
    with pytest.raises(ValueError, match="TRUST_X_FORWARDED_FOR"):
        Settings.from_env({"TRUST_X_FORWARDED_FOR": "maybe"})
