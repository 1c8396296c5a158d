"""What texts cost with and without the model's tokenizer (cache_proxy.costs)."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_proxy.contract import LongTexts
from cache_proxy.costs import INLINE_CHARS, TextCosts, text_cost
from cache_proxy.long_texts import plan_request
from tests.wordpiece import bert_like_json, distilbert


@pytest.fixture(scope="module")
def costs() -> TextCosts:
    return TextCosts.from_json(bert_like_json(), "model-a")


def test_a_short_text_costs_its_tokens(costs: TextCosts) -> None:
    assert costs.count(["I love you!", "films", ""]) == [6, 4, 2]  # [CLS] ... [SEP]
    assert text_cost("I love you!") == 13  # the character bound it replaces


def test_a_long_text_costs_the_most_without_being_tokenized(costs: TextCosts) -> None:
    assert costs.count(["love " * 200]) == [512]


def test_without_a_tokenizer_texts_cost_their_character_bound() -> None:
    texts = ["I love you!", "한국어", "a" * 600]
    assert TextCosts().count(texts) == [text_cost(t) for t in texts]


def test_the_documents_truncation_does_not_hide_tokens() -> None:
    costs = TextCosts.from_json(bert_like_json(truncate_at=4), "model-a")
    assert costs.count(["i love you i love you"]) == [8]


def test_something_else_is_not_a_tokenizer() -> None:
    with pytest.raises(ValueError, match="not a tokenizer"):
        TextCosts.from_json('{"fingerprint": "x"}', "model-a")


async def test_much_text_is_counted_in_a_thread_alike(
    costs: TextCosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    tokenized = TextCosts._tokenized

    def recorded(self: TextCosts, *args: Any) -> list[int]:
        threads.append(threading.get_ident())
        return tokenized(self, *args)

    monkeypatch.setattr(TextCosts, "_tokenized", recorded)
    texts = ["i love you " * 40] * (INLINE_CHARS // 400 + 2)
    assert sum(map(len, texts)) > INLINE_CHARS
    assert await costs(texts) == costs.count(texts) == [122] * len(texts)
    assert await costs(["i love you"]) == [5]
    loop = threading.get_ident()
    # much text in a worker thread; `count` itself and little text on the loop
    assert [thread == loop for thread in threads] == [False, True, True]


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.text(max_size=600), max_size=8))
def test_the_character_bound_never_undercounts_distilberts_tokens(texts: list[str]) -> None:
    tokens = [len(e.ids) for e in distilbert().encode_batch(texts)]
    assert all(min(n, 512) <= text_cost(t) for n, t in zip(tokens, texts, strict=True))


def test_hangul_takes_the_bound_to_its_limit() -> None:
    assert len(distilbert().encode("한국").ids) == text_cost("한국") == 8  # 3 jamo each


class Overlap:
    """Wraps a function; counts how many of its calls ran at once, at most."""

    def __init__(self, run: Any) -> None:
        self.run, self.now, self.most, self.lock = run, 0, 0, threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.05)  # long enough for the others to start, were they let
            return self.run(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


async def test_large_tokenizing_runs_one_at_a_time(costs: TextCosts) -> None:
    # each run in flight holds its texts' token buffers: six at once took the
    # proxy to ~245 MiB under the long-text attack (cache_proxy/costs.py)
    assert costs.tokenizer is not None
    overlap = Overlap(costs.tokenizer.encode_batch)
    tokenizer: Any = SimpleNamespace(encode_batch=overlap)
    counting = TextCosts(tokenizer, costs.release)
    short = ["i love you " * 40] * (INLINE_CHARS // 400 + 2)  # counted
    long = ["i love you " * 300] * 2  # may be long: its prefix is tokenized
    assert sum(map(len, long)) > INLINE_CHARS
    runs: list[Any] = [counting(short) for _ in range(3)]
    runs += [plan_request(long, LongTexts.TRUNCATE, tokenizer, 64, 16) for _ in range(3)]
    done = await asyncio.gather(*runs)
    assert done[0] == [122] * len(short)
    assert done[-1].truncated == [0, 1]
    assert overlap.most == 1
