"""Texts over 512 tokens through a real proxy, Triton and Redis: the
truncation header and metric, the opt-in 413, and windows."""

from __future__ import annotations

import json
import uuid

import pytest

from cache_proxy.costs import MAX_TOKENS, text_cost
from cache_proxy.long_texts import window_texts
from cache_proxy.windows import combine
from tests.http import Reply, request
from tests.stack import (
    Triton,
    admitted_cost,
    distilbert_tokens,
    proxy_metric,
    stats,
    wait_for_token_costs,
)
from tests.wordpiece import distilbert

pytestmark = pytest.mark.integration

OVERLAP, MAX_WINDOWS = 64, 16  # the proxy's defaults (WINDOW_OVERLAP_TOKENS, MAX_WINDOWS)


def document(words: int) -> str:
    """A never-seen text of about `words` tokens, praise first, then complaints
    (so its first 512 tokens and the whole read differently)."""
    praise, complaints = "a fine and moving film . " * (words // 12), "dull , far too long . "
    return f"{uuid.uuid4()} {praise}{complaints * (words // 10)}"


def post(url: str, texts: list[str], long_texts: str | None = None) -> Reply:
    body: dict[str, object] = {"text": texts}
    if long_texts is not None:
        body["long_texts"] = long_texts
    return request("POST", f"{url}/predict", json.dumps(body).encode())


def scores(reply: Reply) -> list[list[float]]:
    return [[entry["score"] for entry in p] for p in reply.json()["predictions"]]


def test_texts_read_in_part_are_named_and_counted(proxy_url: str) -> None:
    wait_for_token_costs(proxy_url)
    long = document(700)
    assert distilbert_tokens(long) > MAX_TOKENS
    before = proxy_metric(proxy_url, "proxy_truncated_texts_total")
    reply = post(proxy_url, ["short", long, "short too", long])
    assert reply.status == 200
    assert reply.headers["X-Truncated"] == "1, 3"
    assert proxy_metric(proxy_url, "proxy_truncated_texts_total") - before == 2
    whole = "good " * (MAX_TOKENS - 2)  # exactly 512 tokens with [CLS] and [SEP]: read whole
    assert distilbert_tokens(whole) == MAX_TOKENS
    assert "X-Truncated" not in post(proxy_url, [whole]).headers


def test_reject_answers_413_naming_the_long_texts_before_any_work(
    proxy_url: str, triton: Triton
) -> None:
    wait_for_token_costs(proxy_url)
    before = stats(triton)
    reply = post(proxy_url, ["fine", document(700)], "reject")
    assert (reply.status, reply.json()["error_type"]) == (413, "payload_too_large")
    assert '"text"[1] has more than 512 tokens' in reply.json()["error"]
    assert stats(triton) == before
    assert post(proxy_url, ["fine"], "reject").status == 200


def test_windows_read_a_long_text_whole_each_window_a_text_of_its_own(
    proxy_url: str, triton: Triton
) -> None:
    wait_for_token_costs(proxy_url)
    doc = document(1500)
    pieces = window_texts(distilbert(), [doc], OVERLAP, MAX_WINDOWS)[0]
    assert len(pieces) >= 3
    before, cost_before = stats(triton), admitted_cost(proxy_url)
    reply = post(proxy_url, [doc], "windows")
    assert reply.status == 200 and "X-Truncated" not in reply.headers
    assert stats(triton)["inferences"] - before["inferences"] == len(pieces)  # windows computed
    costs = [
        text_cost(p) if text_cost(p) == MAX_TOKENS else distilbert_tokens(p) for p, _ in pieces
    ]
    assert admitted_cost(proxy_url) - cost_before == sum(costs)  # each window admitted
    each = post(proxy_url, [p for p, _ in pieces])  # the windows' own answers, cached
    assert each.headers["X-Cache"] == "hit"
    expected = combine(scores(each), [weight for _, weight in pieces])
    assert scores(reply)[0] == pytest.approx(expected, abs=1e-6)
    # the document's first-512 answer is its own cache entry, never the windowed one
    first = post(proxy_url, [doc])
    assert (first.headers["X-Cache"], first.headers["X-Truncated"]) == ("miss", "0")
    assert scores(first)[0] != pytest.approx(scores(reply)[0], abs=1e-6)
    assert post(proxy_url, [doc], "windows").headers["X-Cache"] == "hit"
