"""Long texts: which are over 512 tokens, how a long one is cut into
windows, and how the windows' answers combine (pure, DistilBERT's tokenizer)."""

from __future__ import annotations

import math
from typing import Any, get_args

import pytest

from cache_proxy.contract import LongTexts
from cache_proxy.errors import BackendUnavailable, PayloadTooLarge
from cache_proxy.long_texts import (
    PREFIX_CHARS,
    WINDOW_TOKENS,
    Plan,
    over_limit,
    plan,
    prefix,
    window_texts,
)
from cache_proxy.schemas import LongTextsMode
from cache_proxy.windows import TooManyWindows, combine, plan_windows
from tests.wordpiece import distilbert

WORD = "good "  # one token a word under DistilBERT's tokenizer


def softmax(logits: list[float]) -> list[float]:
    exp = [math.exp(z) for z in logits]
    return [e / sum(exp) for e in exp]


def test_a_short_document_is_one_window() -> None:
    assert [(w.start, w.end, w.weight) for w in plan_windows([True] * 300, 502, 64, 4)] == [
        (0, 300, 300)
    ]


def test_windows_overlap_cover_the_document_and_count_each_token_once() -> None:
    windows = plan_windows([True] * 1200, 502, 64, 16)
    assert [(w.start, w.end) for w in windows] == [(0, 502), (438, 940), (876, 1200)]
    assert [w.weight for w in windows] == [502, 438, 260]  # tokens no earlier window read
    assert sum(w.weight for w in windows) == 1200


def test_windows_start_and_end_where_words_start() -> None:
    starts = [i % 3 == 0 for i in range(1200)]  # words of three tokens
    windows = plan_windows(starts, 502, 64, 16)
    assert all(starts[w.start] for w in windows)
    assert all(w.end == 1200 or starts[w.end] for w in windows)  # no word cut in two
    assert all(w.end - w.start <= 502 for w in windows)
    assert windows[-1].end == 1200


def test_a_document_needing_too_many_windows_is_refused() -> None:
    with pytest.raises(TooManyWindows):
        plan_windows([True] * 2000, 502, 64, 3)


def test_max_windows_allows_exactly_that_many() -> None:
    assert len(plan_windows([True] * 1200, 502, 64, 3)) == 3  # the three windows above
    with pytest.raises(TooManyWindows):
        plan_windows([True] * 1200, 502, 64, 2)


def test_windows_combine_as_their_logits_averaged_by_weight() -> None:
    first, second = [2.0, -1.0], [-3.0, 0.5]
    mixed = combine([softmax(first), softmax(second)], [300, 100])
    averaged = [(300 * a + 100 * b) / 400 for a, b in zip(first, second, strict=True)]
    assert mixed == pytest.approx(softmax(averaged))
    assert combine([[0.2, 0.8]], [7]) == pytest.approx([0.2, 0.8])


def test_truncated_texts_are_those_over_512_tokens_with_cls_and_sep() -> None:
    tokenizer = distilbert()
    texts = ["short", WORD * 510, WORD * 511, "ok", WORD * 3000]
    assert len(tokenizer.encode(texts[1]).ids) == 512
    found = plan(texts, LongTexts.TRUNCATE, tokenizer, overlap=64, max_windows=16)
    assert (found.texts, found.truncated) == (texts, [2, 4])


def test_reject_names_every_text_over_512_tokens() -> None:
    with pytest.raises(PayloadTooLarge, match=r'"text"\[2\], "text"\[4\] have more than 512'):
        plan(["a", "b", WORD * 600, "c", WORD * 900], LongTexts.REJECT, distilbert(), 64, 16)
    assert plan(["a", WORD * 510], LongTexts.REJECT, distilbert(), 64, 16).truncated == []


def test_without_the_model_s_tokenizer_a_long_text_is_not_known() -> None:
    texts = ["a", WORD * 200]  # 1,000 characters: may be over 512 tokens
    assert plan(texts, LongTexts.TRUNCATE, None, 64, 16).truncated == [-1]  # X-Truncated: unknown
    assert plan(["a", "b"], LongTexts.TRUNCATE, None, 64, 16).truncated == []
    with pytest.raises(BackendUnavailable):
        plan(texts, LongTexts.WINDOWS, None, 64, 16)


def test_window_texts_each_fit_the_model_and_together_read_the_whole_text() -> None:
    tokenizer = distilbert()
    words = [f"{w}" for w in ("great", "acting", "but", "a", "dull,", "overlong", "plot.")]
    text = " ".join(words[i % len(words)] for i in range(1500))
    pieces = window_texts(tokenizer, [text], overlap=64, max_windows=16)[0]
    assert len(pieces) > 2
    for piece, _ in pieces:
        assert len(tokenizer.encode(piece).ids) <= WINDOW_TOKENS + 2  # with [CLS] and [SEP]
        assert piece in text
    total = len(tokenizer.encode(text, add_special_tokens=False).ids)
    assert sum(weight for _, weight in pieces) == total
    assert text.startswith(pieces[0][0]) and text.endswith(pieces[-1][0])


def test_windows_mode_scores_windows_and_answers_one_prediction_per_text() -> None:
    texts = ["short", WORD * 1200]
    found = plan(texts, LongTexts.WINDOWS, distilbert(), overlap=64, max_windows=16)
    assert found.texts[0] == "short" and len(found.texts) == 4  # the long one in 3 windows
    assert found.windowed == 1
    scored = [[{"label": "N", "score": 0.5}, {"label": "P", "score": 0.5}]] + [
        [{"label": "N", "score": 1 - p}, {"label": "P", "score": p}] for p in (0.9, 0.2, 0.6)
    ]
    answers = found.answers(scored)
    assert len(answers) == 2 and answers[0] == scored[0]
    weights = [502, 438, 260]  # each window's tokens no earlier one read
    expected = combine([[1 - p, p] for p in (0.9, 0.2, 0.6)], weights)
    assert [e["score"] for e in answers[1]] == pytest.approx(expected)
    assert expected != pytest.approx(combine([[1 - p, p] for p in (0.9, 0.2, 0.6)], [1, 1, 1]))
    assert Plan(["x"]).answers(scored[:1]) == scored[:1]


def test_a_text_over_max_windows_is_413() -> None:
    with pytest.raises(PayloadTooLarge, match="MAX_WINDOWS"):
        plan([WORD * 3000], LongTexts.WINDOWS, distilbert(), overlap=64, max_windows=2)


def test_the_openapi_values_of_long_texts_are_the_contract_s() -> None:
    assert get_args(LongTextsMode) == tuple(m.value for m in LongTexts)


def test_a_text_the_model_reads_whole_is_one_window() -> None:
    whole = WORD * 510  # 512 tokens with [CLS] and [SEP]: more than a window, not too long
    assert window_texts(distilbert(), [whole], 64, 16) == [[(whole, 1)]]
    assert plan([whole], LongTexts.WINDOWS, distilbert(), 64, 16).texts == [whole]


def test_telling_a_long_text_tokenizes_whole_words_of_a_prefix() -> None:
    text = WORD * 4000  # 20,000 characters
    cut = prefix(text)
    assert len(cut) <= PREFIX_CHARS and cut.endswith(" ") and text.startswith(cut)
    assert prefix("x" * (PREFIX_CHARS + 10)) == "x" * (PREFIX_CHARS + 10)  # no space: all of it
    assert prefix("short text") == "short text"
    texts = [WORD * 4000, "tiny " * 20, WORD * 4000]
    tokenizer = Recording(distilbert())
    found = plan(texts, LongTexts.TRUNCATE, tokenizer, 64, 16)  # type: ignore[arg-type]
    assert found.truncated == [0, 2]  # duplicates named each time, tokenized once:
    assert [b for b in tokenizer.batches if b] == [[len(cut)]]  # the long one's prefix alone


def test_a_text_whose_prefix_falls_short_is_told_by_its_whole() -> None:
    text = " " * (PREFIX_CHARS + 1000) + WORD * 600
    assert prefix(text).strip() == ""  # a prefix of no token at all
    assert over_limit(distilbert(), [text]) == [True]
    assert plan([text], LongTexts.TRUNCATE, distilbert(), 64, 16).truncated == [0]


class Recording:
    """A tokenizer that records the lengths of the texts of each batch it encodes."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.batches = tokenizer, list[list[int]]()

    def encode_batch(self, texts: list[str], **options: Any) -> Any:
        self.batches.append([len(t) for t in texts])
        return self.tokenizer.encode_batch(texts, **options)
