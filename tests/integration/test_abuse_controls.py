"""API keys and the Redis token bucket, against real proxies and redis-server."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from devstack.process import free_port
from tests.http import Reply, request
from tests.stack import ProxyFactory, distilbert_tokens, wait_for_token_costs

pytestmark = pytest.mark.integration


def post(url: str, key: str | None = None, text: str = "rate limited text") -> Reply:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return request("POST", f"{url}/predict", json.dumps({"text": [text]}).encode(), headers)


def test_api_keys_guard_the_model_routes_only(start_proxy: ProxyFactory) -> None:
    url = start_proxy(api_keys="key-one,key-two")
    missing = post(url)
    assert missing.status == 401
    assert missing.json()["error_type"] == "unauthorized"
    assert "missing API key" in missing.json()["error"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = post(url, "key-three")
    assert wrong.status == 401
    assert "invalid API key" in wrong.json()["error"]
    assert post(url, "key-two").status == 200
    assert request("GET", f"{url}/model").status == 401
    assert request("GET", f"{url}/model", headers={"Authorization": "Bearer key-one"}).status == 200
    for open_route in ("/health", "/health/ready", "/metrics"):
        assert request("GET", url + open_route).status == 200
    metrics = request("GET", f"{url}/metrics").body.decode()
    assert 'proxy_rejections_total{reason="unauthorized"} 3.0' in metrics


def test_token_bucket_is_shared_by_replicas_and_refills(start_proxy: ProxyFactory) -> None:
    alice, bob = f"alice-{uuid.uuid4()}", f"bob-{uuid.uuid4()}"  # fresh buckets
    text = f"shared bucket {uuid.uuid4().hex[:4]}"
    tokens = distilbert_tokens(text)
    # A request reserves 1 + tokens before it runs: the first (a miss) pays
    # both, the next (hits) 1 each once refunded. Three fit, not four.
    burst = 3 + 2 * tokens
    settings = {
        "api_keys": f"{alice},{bob}",
        "rate_limit_per_second": "2",
        "rate_limit_burst": str(burst),
    }
    first, second = start_proxy(**settings), start_proxy(**settings)
    wait_for_token_costs(first)
    wait_for_token_costs(second)
    replies = [post(url, alice, text) for url in (first, second, first)]
    assert [r.status for r in replies] == [200, 200, 200]
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in replies]
    assert remaining == [tokens + 2, tokens + 1, tokens]
    assert all(r.headers["X-RateLimit-Limit"] == str(burst) for r in replies)
    refused = post(second, alice, text)  # the other replica sees the same bucket
    assert refused.status == 429
    assert refused.json()["error_type"] == "rate_limited"
    assert refused.headers["Retry-After"] == "1"  # one unit short, at 2 units/s
    assert refused.headers["X-RateLimit-Remaining"] == str(tokens)
    assert post(second, bob, text).status == 200  # every key has its own bucket
    time.sleep(0.6)  # 2 tokens/s: one token back
    assert post(first, alice, text).status == 200


def test_anonymous_clients_are_limited_by_address(start_proxy: ProxyFactory) -> None:
    url = start_proxy(rate_limit_per_second="0.5", rate_limit_burst="1")
    assert post(url).status == 200
    refused = post(url)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"
    assert request("GET", f"{url}/health").status == 200  # probes are never limited


def test_rate_limit_fails_open_without_redis(start_proxy: ProxyFactory) -> None:
    url = start_proxy(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        rate_limit_per_second="0.1",
        rate_limit_burst="1",
    )
    assert [post(url).status for _ in range(3)] == [200, 200, 200]
    # every request let through unchecked is counted
    assert "proxy_ratelimit_skipped_total 3.0" in request("GET", f"{url}/metrics").body.decode()


def test_the_rate_limit_charges_the_cost_of_cache_misses(start_proxy: ProxyFactory) -> None:
    key = f"costly-{uuid.uuid4()}"
    url = start_proxy(api_keys=key, rate_limit_per_second="1", rate_limit_burst="100")
    wait_for_token_costs(url)
    texts = [f"{uuid.uuid4()} " + "good " * 90 for _ in range(3)]  # ~110 tokens each
    debt = 1 + sum(distilbert_tokens(t) for t in texts) - 100
    first = request(
        "POST",
        f"{url}/predict",
        json.dumps({"text": texts}).encode(),
        {"Authorization": f"Bearer {key}"},
    )
    assert first.status == 200  # a full bucket lets a request costing more than it through
    assert first.headers["X-RateLimit-Remaining"] == "0"  # ... into debt
    refused = post(url, key)
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= debt > 200  # the debt, at 1 unit/s


def test_forwarded_for_is_read_from_the_right(start_proxy: ProxyFactory) -> None:
    # The peer (127.0.0.1) is a trusted proxy; the client is the rightmost
    # untrusted address, whatever the client wrote to the left of it.
    text = f"xff {uuid.uuid4().hex[:4]}"  # costs 1 + its tokens once, then 1 (cached)
    # each reserves 1 + its tokens before running, refunded to 1 once cached
    burst = 3 + 2 * distilbert_tokens(text)  # three requests, not four
    url = start_proxy(
        trusted_proxies="127.0.0.1", rate_limit_per_second="0.01", rate_limit_burst=str(burst)
    )
    wait_for_token_costs(url)

    def via(spoofed: str, client: str) -> int:
        body = json.dumps({"text": [text]}).encode()
        headers = {"X-Forwarded-For": f"{spoofed}, {client}"}
        return request("POST", f"{url}/predict", body, headers).status

    # a new spoofed address each time does not buy a new bucket...
    assert [via(f"203.0.113.{n}", "198.51.100.1") for n in range(4)] == [200, 200, 200, 429]
    # ...and another client behind the same proxy has its own
    assert via("203.0.113.3", "198.51.100.2") == 200
