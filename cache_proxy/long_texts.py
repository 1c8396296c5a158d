"""Texts longer than the model reads (MAX_TOKENS, [CLS] and [SEP] included),
as the request's `long_texts` asks:

- `truncate` (the default, as before): the model reads the first 512 tokens;
  the answer names those texts in `X-Truncated`.
- `reject`: 413 naming them, before any work.
- `windows`: each is read in windows (windows.py), every window a text of
  its own for the cache, admission and the packed forward, and the answers
  combined. A windowed answer is never cached under the document: it is
  combined from its windows' answers on every request, so it cannot be
  served for a first-512 one.

Token counts come from the served model's tokenizer (costs.TextCosts); a
text shorter than its character bound can never be too long, so only texts
whose bound reaches 512 are tokenized.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenizers import Tokenizer

from cache_proxy.contract import LongTexts, Prediction
from cache_proxy.costs import INLINE_CHARS, MAX_TOKENS, SPECIAL_TOKENS, text_cost
from cache_proxy.errors import BackendUnavailable, PayloadTooLarge
from cache_proxy.windows import TooManyWindows, Window, combine, plan_windows

WINDOW_TOKENS = MAX_TOKENS - SPECIAL_TOKENS - 8  # a margin: a window re-tokenized stays within


@dataclass(frozen=True)
class Plan:
    """What the model scores for a request: `texts` (the request's, or with
    each long one replaced by its windows), `truncated` (indexes of request
    texts the model reads only in part), and for windows, per request text
    its rows in `texts` with their weights."""

    texts: list[str]
    truncated: list[int] = field(default_factory=list)
    parts: list[list[tuple[int, int]]] | None = None

    @property
    def windowed(self) -> int:
        """Request texts read in more than one window."""
        return sum(len(rows) > 1 for rows in self.parts or [])

    def answers(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        """The request's predictions from the scored texts' (windows combined)."""
        if self.parts is None:
            return list(predictions)
        combined = []
        for rows in self.parts:
            if len(rows) == 1:
                combined.append(predictions[rows[0][0]])
                continue
            labels = [entry["label"] for entry in predictions[rows[0][0]]]
            scores = [[entry["score"] for entry in predictions[row]] for row, _ in rows]
            mixed = combine(scores, [weight for _, weight in rows])
            combined.append([{"label": k, "score": s} for k, s in zip(labels, mixed, strict=True)])
        return combined


def may_be_long(text: str) -> bool:
    """Whether `text` could exceed MAX_TOKENS (its character bound reaches it;
    no character makes more than 3 tokens, so short texts are ruled out first)."""
    return 3 * len(text) + SPECIAL_TOKENS > MAX_TOKENS and text_cost(text) >= MAX_TOKENS


def word_starts(tokenizer: Tokenizer, text: str) -> tuple[list[bool], list[tuple[int, int]]]:
    """Per token of `text` (no [CLS]/[SEP]): whether it starts a word, and its characters."""
    encoding = tokenizer.encode(text, add_special_tokens=False)
    words = encoding.word_ids
    starts = [i == 0 or words[i] != words[i - 1] for i in range(len(words))]
    return starts, list(encoding.offsets)


def window_texts(
    tokenizer: Tokenizer, text: str, overlap: int, max_windows: int
) -> list[tuple[str, int]]:
    """`text` as (window text, weight) pairs; raises TooManyWindows."""
    starts, offsets = word_starts(tokenizer, text)
    windows: list[Window] = plan_windows(starts, WINDOW_TOKENS, overlap, max_windows)
    if len(windows) == 1:
        return [(text, 1)]
    return [(text[offsets[w.start][0] : offsets[w.end - 1][1]], w.weight) for w in windows]


def plan(
    texts: Sequence[str],
    mode: LongTexts,
    tokenizer: Tokenizer | None,
    overlap: int,
    max_windows: int,
) -> Plan:
    """What to score for `texts` under `mode` (pure; blocks while tokenizing).
    Raises PayloadTooLarge (reject, or too many windows), or
    BackendUnavailable if a text may be long and no tokenizer is loaded yet."""
    long = [i for i, text in enumerate(texts) if may_be_long(text)]
    if long and tokenizer is None:
        if mode is LongTexts.TRUNCATE:
            return Plan(list(texts), truncated=[-1])  # -1: not known (X-Truncated: unknown)
        raise BackendUnavailable(
            "the model's tokenizer is not loaded yet, so texts over "
            f"{MAX_TOKENS} tokens cannot be told apart; retry"
        )
    if mode is not LongTexts.WINDOWS:
        assert tokenizer is not None or not long
        over = [i for i in long if tokenizer and len(tokenizer.encode(texts[i]).ids) > MAX_TOKENS]
        if over and mode is LongTexts.REJECT:
            raise PayloadTooLarge(
                ", ".join(f'"text"[{i}]' for i in over)
                + f" {'has' if len(over) == 1 else 'have'} more than {MAX_TOKENS} tokens, of "
                f'which the model reads the first {MAX_TOKENS}: shorten, or send "long_texts": '
                '"truncate" or "windows"'
            )
        return Plan(list(texts), truncated=over)
    scored: list[str] = []
    parts: list[list[tuple[int, int]]] = []
    for i, text in enumerate(texts):
        try:
            pieces = (
                window_texts(tokenizer, text, overlap, max_windows)
                if tokenizer is not None and may_be_long(text)
                else [(text, 1)]
            )
        except TooManyWindows:
            raise PayloadTooLarge(
                f'"text"[{i}] needs more than {max_windows} windows of {WINDOW_TOKENS} tokens '
                f"(MAX_WINDOWS): send a shorter document"
            ) from None
        parts.append([(len(scored) + k, weight) for k, (_, weight) in enumerate(pieces)])
        scored += [piece for piece, _ in pieces]
    return Plan(scored, parts=parts)


async def plan_request(
    texts: Sequence[str],
    mode: LongTexts,
    tokenizer: Tokenizer | None,
    overlap: int,
    max_windows: int,
) -> Plan:
    """`plan`, in a worker thread when there is much to tokenize."""
    if sum(len(t) for t in texts if may_be_long(t)) <= INLINE_CHARS:
        return plan(texts, mode, tokenizer, overlap, max_windows)
    return await asyncio.to_thread(plan, texts, mode, tokenizer, overlap, max_windows)
