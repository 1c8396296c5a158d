"""API-key parsing, client identity and rate-limit decisions (pure functions)."""

from __future__ import annotations

import pytest

from cache_proxy.guard import bearer_token, client_address, client_identity, key_is_valid
from cache_proxy.ratelimit import decide
from cache_proxy.settings import Settings, redacted


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
    keys = Settings(api_keys=" k1 , k2,, ").api_keys
    assert keys == {"k1", "k2"}
    assert key_is_valid("k2", keys)
    assert not key_is_valid("k3", keys)
    assert not key_is_valid(None, keys)
    assert not key_is_valid("k1", frozenset())


def test_a_key_that_is_not_utf8_is_invalid_not_an_error() -> None:
    """aiohttp keeps an undecodable header byte as a surrogate: `Bearer \\xff`."""
    keys = Settings(api_keys="k1").api_keys
    assert not key_is_valid("\udcff", keys)
    assert client_identity("\udcff", "10.0.0.1").startswith("key:")


def test_client_identity_prefers_the_key() -> None:
    by_key = client_identity("secret", "10.0.0.1")
    assert by_key.startswith("key:")
    assert "secret" not in by_key
    assert client_identity("secret", "192.168.1.9") == by_key  # one key, one bucket
    assert client_identity("another", "10.0.0.1") != by_key  # each key its own
    assert client_identity(None, "10.0.0.1") == "ip:10.0.0.1"


TRUSTED = Settings(trusted_proxies="10.0.0.0/8, 192.168.1.7").trusted_proxies


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # no trusted proxy configured, or an untrusted peer: X-Forwarded-For is ignored
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),
        # the rightmost address that is not a trusted proxy, never the client-written first one
        ("10.0.0.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.9", "1.2.3.4"),
        ("10.0.0.1", "1.2.3.4,192.168.1.7", "1.2.3.4"),
        ("10.0.0.1", "10.0.0.5, 10.0.0.9", "10.0.0.5"),  # every hop trusted: the first
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", " , ", "10.0.0.1"),
        ("10.0.0.1", "garbage, 1.2.3.4", "1.2.3.4"),
        (None, "1.2.3.4", "unknown"),
        # a port is not a new client
        ("10.0.0.1", "1.2.3.4:5678", "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4:5678, 10.0.0.9:80", "1.2.3.4"),
        ("10.0.0.1", '"[2001:db8::1]:443"', "2001:db8::/64"),
        # IPv6 clients by /64: rotating within it is one client
        ("10.0.0.1", "2001:db8:0:0:aaaa::1", "2001:db8::/64"),
        ("10.0.0.1", "2001:db8::ffff:2", "2001:db8::/64"),
        ("2001:db8:1:2::7", None, "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", None, "203.0.113.9"),
    ],
)
def test_client_address(peer: str | None, forwarded: str | None, client: str) -> None:
    assert client_address(peer, [forwarded] if forwarded else [], TRUSTED) == client


def test_every_forwarded_for_header_is_read_in_order() -> None:
    """Two headers are one list (RFC 9110): a client-written first header plus
    the one the ingress appended must not let the client pick its identity."""
    headers = ["6.6.6.6", "1.2.3.4, 10.0.0.9"]
    assert client_address("10.0.0.1", headers, TRUSTED) == "1.2.3.4"
    assert client_address("10.0.0.1", ["1.2.3.4", "6.6.6.6"], TRUSTED) == "6.6.6.6"


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert client_address("10.0.0.1", ["1.2.3.4"], Settings().trusted_proxies) == "10.0.0.1"


def test_bad_trusted_proxy_fails_at_load_naming_the_variable() -> None:
    with pytest.raises(
        ValueError, match=r"TRUSTED_PROXIES=.*does not appear to be an IPv4 or IPv6"
    ):
        Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"})


def test_list_settings_are_read_from_the_environment_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.1.2.3/8, 2001:db8::/32")
    monkeypatch.setenv("API_KEYS", "k1, k2")
    settings = Settings.from_env()
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "2001:db8::/32"]
    assert settings.api_keys == {"k1", "k2"}
    assert "k1" not in repr(settings)  # keys never reach a log


def test_passwords_never_reach_the_log() -> None:
    assert redacted("rediss://:s3cret@redis:6380/0") == "rediss://:***@redis:6380/0"
    assert redacted("redis://user:s3cret@redis/0") == "redis://user:***@redis/0"
    assert redacted("redis://redis:6379/0") == "redis://redis:6379/0"
    assert redacted("redis://redis:6379/0?password=s3cret&db=1") == (
        "redis://redis:6379/0?password=***&db=1"
    )
    assert (
        redacted("rediss://redis/0?ssl_ca_certs=/ca.crt") == "rediss://redis/0?ssl_ca_certs=/ca.crt"
    )


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
    assert Settings.from_env({"REDIS_CLUSTER": raw}).redis_cluster is value


def test_bad_bool_setting_is_an_error() -> None:
    with pytest.raises(ValueError, match="REDIS_CLUSTER"):
        Settings.from_env({"REDIS_CLUSTER": "maybe"})
