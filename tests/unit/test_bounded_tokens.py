"""Texts are cut before tokenization, and the cut never changes a text's
first 512 tokens (the real bert-base-uncased WordPiece tokenizer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tokens import bounded_token_ids, prefix_at_whitespace

MAX = 512
WORDS = ["the", "film", "is", "a", "charming", "and", "often", "affecting", "journey"]


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tiny_checkpoint, local_files_only=True)


def prose(words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


ADVERSARIAL = {
    "plain prose": prose(5000),
    "short": "I love you!",
    "whitespace run first": " " * 50_000 + prose(600),
    "newline and tab runs": ("\n\t\r " * 3000).join(prose(40) for _ in range(20)),
    "control characters join words": "\x1c".join(prose(3) for _ in range(2000)),
    "nul runs": "\x00" * 30_000 + prose(700),
    "one long word first": "a" * 40_000 + " " + prose(700),
    "long words throughout": " ".join("x" * 150 for _ in range(400)),
    "emoji": "🙂" * 5000 + " 😡 " * 1000,
    "emoji words": " ".join("good🙂bad" for _ in range(3000)),
    "ideographic spaces": "\u3000".join(prose(2) for _ in range(2000)),
    "cjk": "好电影" * 2000,
    "hangul": ("한국어 문장 " * 2000),
    "combining marks after spaces": " \u0301".join(prose(1) for _ in range(4000)),
    "punctuation": "!?." * 5000,
    "no-break spaces": "\u00a0".join(prose(1) for _ in range(4000)),
    # 508 tokens fill the first 4,093 characters, so the first window (4,096)
    # ends 3 characters into "unbelievable" (one token; "unb" is two).
    "word straddles the window edge": " " * 3077 + "a " * 508 + "unbelievable " + prose(99),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_cut_tokens_equal_whole_text_tokens(tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    text = ADVERSARIAL[name]

    def tokenize(texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX)["input_ids"]]

    whole = tokenize([text])[0]
    assert bounded_token_ids([text], tokenize, MAX) == [whole]


def test_prose_is_tokenized_only_as_far_as_needed(tokenizer: PreTrainedTokenizerBase) -> None:
    seen: list[int] = []

    def tokenize(texts: list[str]) -> list[list[int]]:
        seen.extend(len(t) for t in texts)
        return [list(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX)["input_ids"]]

    megabyte = prose(200_000)
    assert len(megabyte) > 1_000_000
    [ids] = bounded_token_ids([megabyte], tokenize, MAX)
    assert len(ids) == MAX
    assert max(seen) <= MAX * 8  # one window, not the megabyte


def test_mixed_batch_keeps_order(tokenizer: PreTrainedTokenizerBase) -> None:
    texts = [ADVERSARIAL["whitespace run first"], "short one", prose(3000), ""]

    def tokenize(batch: list[str]) -> list[list[int]]:
        return [list(ids) for ids in tokenizer(batch, truncation=True, max_length=MAX)["input_ids"]]

    assert bounded_token_ids(texts, tokenize, MAX) == tokenize(texts)


@pytest.mark.parametrize(
    ("text", "chars", "prefix"),
    [
        ("short", 10, "short"),
        ("one two three", 9, "one two"),
        ("one two three", 7, "one"),  # a cut right at a space keeps the word before it
        ("onetwothree", 5, None),
        ("one\x1ctwo three", 7, None),  # a control character is no boundary
        ("one\u3000two three", 6, "one"),
    ],
)
def test_prefix_at_whitespace(text: str, chars: int, prefix: str | None) -> None:
    assert prefix_at_whitespace(text, chars) == prefix
