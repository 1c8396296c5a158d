"""The public /predict API through a real proxy, Triton and Redis."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cache_proxy.costs import text_cost
from tests.http import predict, request
from tests.stack import (
    ProxyFactory,
    Triton,
    admitted_cost,
    distilbert_tokens,
    http_scores,
    stats,
    wait_for_token_costs,
)

pytestmark = pytest.mark.integration


def fresh(n: int) -> list[str]:
    """Texts no earlier test has sent (so they start as cache misses)."""
    return [f"fresh text {uuid.uuid4()}" for _ in range(n)]


def test_contract_matches_the_original_project(proxy_url: str, triton: Triton) -> None:
    texts = ["I love you!", "I hate you!", "I love you!"]
    reply = predict(proxy_url, texts)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    predictions = reply.json()["predictions"]
    assert len(predictions) == 3
    for entry in predictions:
        assert [p["label"] for p in entry] == ["NEGATIVE", "POSITIVE"]
        assert sum(p["score"] for p in entry) == pytest.approx(1.0, abs=1e-6)
    assert predictions[0] == predictions[2]
    direct = http_scores(triton, texts[:2])
    got = np.array([[p["score"] for p in e] for e in predictions[:2]])
    np.testing.assert_allclose(got, direct, atol=1e-6)


def test_a_miss_costs_its_tokens_under_the_models_tokenizer(proxy_url: str) -> None:
    """The proxy counts tokens with the tokenizer the model sent (standin-tiny:
    DistilBERT's), not the character bound."""
    wait_for_token_costs(proxy_url)
    text = f"I love you! {uuid.uuid4()}"
    before = admitted_cost(proxy_url)
    assert predict(proxy_url, [text]).headers["X-Cache"] == "miss"
    spent = admitted_cost(proxy_url) - before
    assert spent == distilbert_tokens(text) < text_cost(text)


def test_json_content_type_is_optional_and_accepted(proxy_url: str) -> None:
    body = json.dumps({"text": ["ok"]}).encode()
    for headers in ({}, {"Content-Type": "application/json"}, {"Content-Type": "text/plain"}):
        assert request("POST", f"{proxy_url}/predict", body, headers).status == 200


def test_cache_miss_then_hit_then_partial(proxy_url: str, triton: Triton) -> None:
    first, second = fresh(2)
    miss = predict(proxy_url, [first])
    assert miss.headers["X-Cache"] == "miss"
    before = stats(triton)
    hit = predict(proxy_url, [first, first])
    assert hit.headers["X-Cache"] == "hit"
    assert hit.json()["predictions"] == miss.json()["predictions"] * 2
    assert stats(triton) == before, "a cache hit reached Triton"
    partial = predict(proxy_url, [first, second])
    assert partial.headers["X-Cache"] == "partial"
    assert partial.json()["predictions"][0] == miss.json()["predictions"][0]
    after = stats(triton)
    assert after["inferences"] - before["inferences"] == 1  # only `second` was computed


def test_duplicates_in_one_request_are_computed_once(proxy_url: str, triton: Triton) -> None:
    text = fresh(1)[0]
    before = stats(triton)
    reply = predict(proxy_url, [text] * 10)
    assert reply.status == 200 and len(reply.json()["predictions"]) == 10
    assert stats(triton)["inferences"] - before["inferences"] == 1


def test_timing_and_model_headers(proxy_url: str) -> None:
    reply = predict(proxy_url, fresh(1))
    assert float(reply.headers["X-Total-Time"]) >= float(reply.headers["X-Inference-Time"]) > 0
    assert len(reply.headers["X-Model-Fingerprint"]) == 16


@pytest.mark.parametrize(
    "text",
    [
        "",
        "🙂🔥 emoji only 👍",
        "control \x00\x01\x07\x1b[31m chars\r\n\t",
        "<script>alert('x')</script><b>html</b> &amp;",
        "très bien, naïve café",
        "word " * 3000,
        "\u200b\u202e right-to-left \ufeff",
    ],
)
def test_odd_but_valid_texts_get_predictions(proxy_url: str, text: str) -> None:
    reply = predict(proxy_url, [text])
    assert reply.status == 200
    assert len(reply.json()["predictions"][0]) == 2


def test_empty_list(proxy_url: str) -> None:
    reply = predict(proxy_url, [])
    assert (reply.status, reply.json()) == (200, {"predictions": []})


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"this is not json", 400),
        (b"\xff\xfe\x00", 400),
        (b'{"text": ["unterminated"', 400),
        (b"{}", 422),
        (b"[]", 422),
        (b'{"text": "not a list"}', 422),
        (b'{"text": null}', 422),
        (b'{"text": [null]}', 422),
        (b'{"text": [1, 2]}', 422),
        (b'{"text": [["nested"]]}', 422),
        (b'{"text": [{"a": 1}]}', 422),
        (b'{"text": ["\\udc00"]}', 422),
    ],
)
def test_bad_input_gets_a_json_4xx(proxy_url: str, body: bytes, status: int) -> None:
    reply = request("POST", f"{proxy_url}/predict", body)
    assert reply.status == status
    error = reply.json()
    assert set(error) == {"error", "error_type"} and error["error"]


def test_body_over_the_limit_is_413(proxy_url: str) -> None:
    body = json.dumps({"text": ["x" * (1024 * 1024)]}).encode()
    reply = request("POST", f"{proxy_url}/predict", body)
    assert reply.status == 413
    assert reply.json()["error_type"] == "payload_too_large"


def test_too_many_texts_is_413(proxy_url: str) -> None:
    reply = predict(proxy_url, ["a"] * 257)
    assert reply.status == 413
    assert "limit is 256" in reply.json()["error"]


def test_limits_are_configurable(start_proxy: ProxyFactory) -> None:
    url = start_proxy(max_texts="2", max_body_bytes="100")
    assert predict(url, ["a", "b"]).status == 200
    assert predict(url, ["a", "b", "c"]).status == 413
    assert predict(url, ["x" * 200]).status == 413


def test_unknown_route_and_wrong_method(proxy_url: str) -> None:
    missing = request("GET", f"{proxy_url}/nope")
    assert missing.status == 404 and missing.json()["error_type"] == "not_found"
    wrong = request("GET", f"{proxy_url}/predict")
    assert wrong.status == 405 and wrong.json()["error_type"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "POST"
    assert request("DELETE", f"{proxy_url}/health").status == 405


def test_service_survives_all_of_that(proxy_url: str) -> None:
    assert request("GET", f"{proxy_url}/health").json() == {"status": "alive"}
    assert predict(proxy_url, ["still here"]).status == 200


def test_readiness_and_model_identity(proxy_url: str) -> None:
    ready = request("GET", f"{proxy_url}/health/ready")
    assert ready.status == 200
    body = ready.json()
    assert (body["status"], body["triton"], body["redis"]) == ("ready", "ready", "ok")
    model = request("GET", f"{proxy_url}/model").json()["model"]
    assert model == body["model"]
    assert model["standin"] is True and "random weights" in model["warning"]
    assert model["source"] == "standin" and model["name"] == "standin-tiny"


def test_metrics_exposition(proxy_url: str) -> None:
    predict(proxy_url, ["metrics please"])
    text = request("GET", f"{proxy_url}/metrics").body.decode()
    for name in (
        "proxy_requests_total",
        "proxy_request_seconds_bucket",
        "proxy_cache_lookups_total",
        "proxy_texts_per_request_bucket",
        "proxy_triton_seconds_bucket",
        "proxy_redis_up",
    ):
        assert name in text
    assert 'route="/predict"' in text


def test_concurrent_identical_texts_are_computed_once(proxy_url: str, triton: Triton) -> None:
    """Single-flight across requests: 8 requests for one new text, one inference."""
    text = fresh(1)[0]
    before = stats(triton)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: predict(proxy_url, [text]), range(8)))
    assert all(r.status == 200 for r in replies)
    assert len({json.dumps(r.json()) for r in replies}) == 1
    assert stats(triton)["inferences"] - before["inferences"] == 1


def test_concurrent_requests_for_a_cached_text_are_all_hits(proxy_url: str) -> None:
    """Requests that share a concurrent request's cache lookup report a hit
    (single-flight merges lookups too; no inference happens)."""
    texts = fresh(3)
    assert predict(proxy_url, texts).headers["X-Cache"] == "miss"
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda _: predict(proxy_url, texts), range(64)))
    assert {r.headers["X-Cache"] for r in replies} == {"hit"}
    assert {r.headers["X-Inference-Time"] for r in replies} == {"0.00"}
