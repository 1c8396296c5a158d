"""Texts to token ids, pure: decode a TEXT tensor, and tokenize a text only
as far as its first max_length tokens need (the tokenizer is a callback)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray


def decode_texts(array: NDArray[np.object_]) -> list[str]:
    """Turn a TEXT tensor of shape [N, 1] into N strings (UTF-8)."""
    if array.ndim != 2 or array.shape[1] != 1:
        raise ValueError(f"TEXT must have shape [N, 1], got {list(array.shape)}")
    texts = []
    for row, item in enumerate(array[:, 0]):
        if isinstance(item, bytes):
            try:
                texts.append(item.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise ValueError(f"TEXT row {row} is not valid UTF-8: {exc}") from None
        else:
            texts.append(str(item))
    return texts


# What BERT's normalizer and pre-tokenizer treat as whitespace: \t \n \r and
# Unicode category Zs. Every word boundary of the tokenizer lies on one; a
# control character (\x00, \x1c, ...) is deleted, not a boundary.
BERT_WHITESPACE = re.compile("[ \t\n\r\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
WINDOW_CHARS_PER_TOKEN = 8  # first window: max_length * 8 characters
Tokenize = Callable[[list[str]], list[list[int]]]


def prefix_at_whitespace(text: str, chars: int) -> str | None:
    """`text` if it has at most `chars` characters; else its longest prefix
    within the first `chars` that ends before a BERT whitespace (None if there
    is none there). Tokens of such a prefix are a prefix of the text's tokens."""
    if len(text) <= chars:
        return text
    last = None
    for last in BERT_WHITESPACE.finditer(text, 0, chars):  # noqa: B007 - the last match
        pass
    return text[: last.start()] if last is not None else None


def bounded_token_ids(texts: Sequence[str], tokenize: Tokenize, max_length: int) -> list[list[int]]:
    """Token ids of each text truncated to `max_length`, exactly as tokenizing
    the whole text would give, without tokenizing more of it than needed.

    Each text is cut at a word boundary within a window of characters. When
    the cut part already fills `max_length` tokens, those are the text's first
    tokens; otherwise (long whitespace or control runs, very long words) the
    window grows fourfold, up to the whole text. So a megabyte of prose costs
    a few thousand characters of tokenization.
    """
    result: list[list[int] | None] = [None] * len(texts)
    pending = list(range(len(texts)))
    window = max_length * WINDOW_CHARS_PER_TOKEN
    while pending:
        prefixes = [prefix_at_whitespace(texts[i], window) for i in pending]
        encoded = tokenize([p or "" for p in prefixes])
        still = []
        for i, prefix, ids in zip(pending, prefixes, encoded, strict=True):
            if prefix == texts[i] or (prefix is not None and len(ids) >= max_length):
                result[i] = ids
            else:
                still.append(i)
        pending, window = still, window * 4
    return [ids for ids in result if ids is not None]
