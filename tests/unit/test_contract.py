"""The /predict contract, cache encoding and settings (pure functions)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cache_proxy.cache import cache_key, decode_scores
from cache_proxy.contract import LongTexts, parse_request, to_predictions, unique
from cache_proxy.costs import text_cost
from cache_proxy.errors import (
    ApiError,
    BackendUnavailable,
    MalformedRequest,
    PayloadTooLarge,
    ValidationFailed,
)
from cache_proxy.predictor import cache_status, time_left
from cache_proxy.settings import Settings
from cache_proxy.tracker import ModelIdentity, ModelTracker


def test_parse_accepts_the_original_payload() -> None:
    assert parse_request(b'{"text": ["I love you!", "I hate you!"]}', 10, 100).texts == [
        "I love you!",
        "I hate you!",
    ]
    assert parse_request(b'{"text": []}', 10, 100).texts == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", MalformedRequest),
        (b"   ", MalformedRequest),
        (b"not json", MalformedRequest),
        (b"\xff\xfe{}", MalformedRequest),
        (b'{"text": ["a"', MalformedRequest),
        (b"[]", ValidationFailed),
        (b'"text"', ValidationFailed),
        (b"{}", ValidationFailed),
        (b'{"texts": ["a"]}', ValidationFailed),
        (b'{"text": "a"}', ValidationFailed),
        (b'{"text": null}', ValidationFailed),
        (b'{"text": [null]}', ValidationFailed),
        (b'{"text": [1]}', ValidationFailed),
        (b'{"text": [["nested"]]}', ValidationFailed),
        (b'{"text": [true]}', ValidationFailed),
        (b'{"text": ["\\ud800"]}', ValidationFailed),
        (b'{"text": ["a", "b", "c", "d"]}', PayloadTooLarge),
        (b'{"text": ["0123456789a"]}', PayloadTooLarge),
        (b'{"text": ["a"], "text": ["b"]}', MalformedRequest),
        (b'{"text": [{"k": 1, "k": 2}]}', MalformedRequest),
        (b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}", MalformedRequest),
        (b'{"text": ["a"], "n": ' + b"1" * 5000 + b"}", MalformedRequest),
        (b'{"text": ["a"], "long_texts": "summarize"}', ValidationFailed),
        (b'{"text": ["a"], "long_texts": ["windows"]}', ValidationFailed),
    ],
)
def test_parse_rejects(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_request(body, max_texts=3, max_chars=10)


def test_long_texts_defaults_to_truncation_as_before() -> None:
    assert parse_request(b'{"text": ["a"]}', 3, 10).long_texts is LongTexts.TRUNCATE
    body = b'{"text": ["a"], "long_texts": "windows"}'
    assert parse_request(body, 3, 10).long_texts is LongTexts.WINDOWS


def test_huge_numbers_outside_the_texts_are_harmless() -> None:
    assert parse_request(b'{"text": ["a"], "n": 1e99999}', 3, 10).texts == ["a"]


@pytest.mark.parametrize(
    ("text", "cost"),
    [
        ("", 2),
        ("I love you!", 13),
        ("한국어", 2 + 3 * 3),  # a Hangul syllable decomposes into up to 3 jamo
        ("a" * 600, 512),
        ("한" * 200, 512),
    ],
)
def test_text_cost_bounds_the_tokens(text: str, cost: int) -> None:
    assert text_cost(text) == cost


SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1)  # JSON can carry them


@given(st.lists(st.one_of(st.text(), SURROGATES), max_size=20))
def test_parse_round_trips_any_text_list(texts: list[str]) -> None:
    body = json.dumps({"text": texts}).encode()
    sent = json.loads(body)["text"]  # an escaped surrogate pair is one character in JSON
    if all(_encodable(t) for t in sent):
        assert parse_request(body, max_texts=20, max_chars=10_000).texts == sent
    else:  # a lone surrogate
        with pytest.raises(ValidationFailed):
            parse_request(body, max_texts=20, max_chars=10_000)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def test_predictions_keep_label_order() -> None:
    got = to_predictions([[0.25, 0.75]], ["NEGATIVE", "POSITIVE"])
    assert got == [[{"label": "NEGATIVE", "score": 0.25}, {"label": "POSITIVE", "score": 0.75}]]


def test_unique_keeps_first_seen_order() -> None:
    assert unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_cache_status() -> None:
    assert cache_status(3, 0) == "hit"
    assert cache_status(3, 3) == "miss"
    assert cache_status(3, 1) == "partial"


def test_cache_key_depends_on_model_and_text() -> None:
    key = cache_key("fp1", "I love you!")
    assert key.startswith("sst2:fp1:")
    assert key != cache_key("fp2", "I love you!")
    assert key != cache_key("fp1", "I love you")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[0.25, 0.75]", [0.25, 0.75]),
        (None, None),
        (b"garbage", None),
        (b"[0.5]", None),
        (b"[1, 0]", None),
        (b"[0.5, 1.5]", None),
        (b'{"a": 1}', None),
    ],
)
def test_decode_scores_rejects_anything_odd(raw: bytes | None, expected: object) -> None:
    assert decode_scores(raw, width=2) == expected


def test_settings_from_env() -> None:
    settings = Settings.from_env({"PROXY_PORT": "9000", "CACHE_TTL_SECONDS": "5", "REDIS_URL": ""})
    assert settings.proxy_port == 9000
    assert settings.cache_ttl_seconds == 5
    assert settings.redis_url == ""
    assert Settings.from_env({}) == Settings()
    with pytest.raises(ValueError, match="MAX_TEXTS"):
        Settings.from_env({"MAX_TEXTS": "many"})


def test_time_left_refuses_a_passed_deadline() -> None:
    assert 0 < time_left(time.monotonic() + 5) <= 5
    with pytest.raises(BackendUnavailable, match="deadline passed"):
        time_left(time.monotonic() - 0.001)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def parse_outcome(body: bytes, max_texts: int) -> list[str] | ApiError:
    """The parsed texts or the ApiError; any other exception propagates (a bug)."""
    try:
        return parse_request(body, max_texts, max_chars=10_000).texts
    except ApiError as exc:
        return exc


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_fail_with_a_4xx(body: bytes) -> None:
    outcome = parse_outcome(body, 5)
    if isinstance(outcome, ApiError):
        assert 400 <= outcome.status < 500
    else:
        assert all(isinstance(t, str) for t in outcome)


@given(JSON_VALUES | st.dictionaries(st.just("text"), JSON_VALUES))
def test_any_json_parses_to_strings_or_fails_with_a_4xx(value: object) -> None:
    body = json.dumps(value).encode()
    outcome = parse_outcome(body, 3)
    if isinstance(outcome, ApiError):
        assert 400 <= outcome.status < 500
    else:
        assert isinstance(value, dict)
        assert outcome == value["text"]
        assert len(outcome) <= 3


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b"{}",
        b'{"fingerprint": "f"}',
        b'{"fingerprint": 1, "labels": ["A"]}',
        b'{"fingerprint": "f", "labels": []}',
    ],
)
def test_model_identity_needs_a_fingerprint_and_labels(raw: bytes) -> None:
    with pytest.raises(ValueError, match="MODEL_INFO"):
        ModelIdentity.from_json(raw)


def test_model_identity_is_typed() -> None:
    raw = b'{"fingerprint": "f1", "labels": ["N", "P"], "name": "m", "standin": true, "x": 1}'
    identity = ModelIdentity.from_json(raw)
    assert (identity.fingerprint, identity.labels, identity.name) == ("f1", ("N", "P"), "m")
    assert identity.standin and identity.source == "unknown"
    assert identity.info["x"] == 1  # /model shows all of it
    assert identity.release == "f1"  # no release given: a release of its own
    assert ModelIdentity.from_info({**identity.info, "release": "r"}).release == "r"


def test_the_tracker_reads_the_cache_under_every_fingerprint_of_the_current_release() -> None:
    def answer(fingerprint: str, release: str) -> ModelIdentity:
        return ModelIdentity(fingerprint, ("N", "P"), release=release)

    tracker = ModelTracker(serving_window=0.05)
    assert tracker.accepted() == []
    fp32, int8 = answer("fp32", "r1"), answer("int8", "r1")
    assert tracker.observe(fp32) and tracker.observe(int8)
    assert tracker.accepted() == [fp32, int8]  # the current one first
    time.sleep(0.06)
    assert tracker.observe(fp32)
    assert tracker.accepted() == [fp32]  # int8 silent past the window: not looked up
    new = answer("fp32-new", "r2")
    assert tracker.observe(new) and not tracker.observe(int8)  # r1 retired
    assert tracker.accepted() == [new]


def test_the_tracker_names_retired_releases_only_while_it_would_refuse_them() -> None:
    """What a call asks replicas to decline (tracker.refusing) is exactly
    what `observe` would refuse: the retired releases, until the current one
    has been silent for `reinstate_after` (a rollback then reinstates one)."""
    old, new = (ModelIdentity(f, ("N", "P"), release=r) for f, r in (("a", "r1"), ("b", "r2")))
    tracker = ModelTracker(reinstate_after=0.05)
    assert tracker.refusing() == []
    assert tracker.observe(old) and tracker.refusing() == []
    assert tracker.observe(new) and tracker.refusing() == ["r1"]
    assert not tracker.observe(old)
    time.sleep(0.06)
    assert tracker.refusing() == []  # r2 silent: r1 may answer again
    assert tracker.observe(old) and tracker.refusing() == ["r2"]
