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
text whose character bound stays under 512 can never be too long, so only
the others are tokenized, once per distinct text, and only as far as telling
needs (a prefix), except for windows, which read the whole text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenizers import Tokenizer

from cache_proxy.contract import LongTexts, Prediction
from cache_proxy.costs import INLINE_CHARS, MAX_TOKENS, SPECIAL_TOKENS, text_cost, tokenizing
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


PREFIX_CHARS = 16 * MAX_TOKENS  # tokenized to tell a long text; far more than 512 tokens of prose


def prefix(text: str) -> str:
    """`text` up to the last space within PREFIX_CHARS: its first words, whole."""
    if len(text) <= PREFIX_CHARS:
        return text
    cut = text.rfind(" ", 0, PREFIX_CHARS)
    return text[: cut + 1] if cut > 0 else text


def over_limit(tokenizer: Tokenizer, texts: Sequence[str]) -> list[bool]:
    """Whether each text has more than MAX_TOKENS tokens ([CLS] and [SEP]
    included). Only a prefix cut where a word starts is tokenized (its tokens
    are the text's first ones); a text whose prefix falls short is tokenized
    whole. One encode_batch each time: it releases the GIL."""
    prefixes = [prefix(t) for t in texts]
    over = [len(e.ids) > MAX_TOKENS for e in tokenizer.encode_batch(prefixes)]
    unsure = [i for i, t in enumerate(texts) if not over[i] and prefixes[i] != t]
    for i, encoding in zip(unsure, tokenizer.encode_batch([texts[i] for i in unsure]), strict=True):
        over[i] = len(encoding.ids) > MAX_TOKENS
    return over


def window_texts(
    tokenizer: Tokenizer, texts: Sequence[str], overlap: int, max_windows: int
) -> list[list[tuple[str, int]]]:
    """Each of `texts` as (window text, weight) pairs, itself alone if the
    model reads it whole; raises TooManyWindows (with the text's index)."""
    pieces = []
    for i, (text, encoding) in enumerate(
        zip(texts, tokenizer.encode_batch(list(texts), add_special_tokens=False), strict=True)
    ):
        words, offsets = encoding.word_ids, encoding.offsets
        if len(words) + SPECIAL_TOKENS <= MAX_TOKENS:
            pieces.append([(text, 1)])
            continue
        starts = [k == 0 or words[k] != words[k - 1] for k in range(len(words))]
        try:
            windows: list[Window] = plan_windows(starts, WINDOW_TOKENS, overlap, max_windows)
        except TooManyWindows as exc:
            raise TooManyWindows(i) from exc
        pieces.append(
            [(text[offsets[w.start][0] : offsets[w.end - 1][1]], w.weight) for w in windows]
        )
    return pieces


def plan(
    texts: Sequence[str],
    mode: LongTexts,
    tokenizer: Tokenizer | None,
    overlap: int,
    max_windows: int,
) -> Plan:
    """What to score for `texts` under `mode` (pure; blocks while tokenizing
    the distinct texts that may be long). Raises PayloadTooLarge (reject, or
    too many windows), or BackendUnavailable if a text may be long and the
    model's tokenizer is not loaded yet."""
    long = list(dict.fromkeys(t for t in texts if may_be_long(t)))
    if long and tokenizer is None:
        if mode is LongTexts.TRUNCATE:
            return Plan(list(texts), truncated=[-1])  # -1: not known (X-Truncated: unknown)
        raise BackendUnavailable(
            "the model's tokenizer is not loaded yet, so texts over "
            f"{MAX_TOKENS} tokens cannot be told apart; retry shortly"
        )
    if not long or tokenizer is None:
        return Plan(list(texts))
    if mode is not LongTexts.WINDOWS:
        too_long = {t for t, over in zip(long, over_limit(tokenizer, long), strict=True) if over}
        over = [i for i, text in enumerate(texts) if text in too_long]
        if over and mode is LongTexts.REJECT:
            raise PayloadTooLarge(
                ", ".join(f'"text"[{i}]' for i in over)
                + f" {'has' if len(over) == 1 else 'have'} more than {MAX_TOKENS} tokens, of "
                f'which the model reads the first {MAX_TOKENS}: shorten, or send "long_texts": '
                '"truncate" or "windows"'
            )
        return Plan(list(texts), truncated=over)
    try:
        split = dict(zip(long, window_texts(tokenizer, long, overlap, max_windows), strict=True))
    except TooManyWindows as exc:
        index = texts.index(long[exc.args[0]])
        raise PayloadTooLarge(
            f'"text"[{index}] needs more than {max_windows} windows of {WINDOW_TOKENS} tokens '
            f"(MAX_WINDOWS): send a shorter document"
        ) from None
    scored: list[str] = []
    parts: list[list[tuple[int, int]]] = []
    for text in texts:
        pieces = split.get(text, [(text, 1)])
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
    """`plan`, in the tokenizer's thread when there is much to tokenize."""
    if sum(len(t) for t in texts if may_be_long(t)) <= INLINE_CHARS:
        return plan(texts, mode, tokenizer, overlap, max_windows)
    return await tokenizing(plan, texts, mode, tokenizer, overlap, max_windows)
