"""The `/predict` JSON contract, as pure functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cache_proxy.costs import MAX_TOKENS
from cache_proxy.errors import MalformedRequest, PayloadTooLarge, ValidationFailed

Prediction = list[dict[str, Any]]


class LongTexts(StrEnum):
    """What to do with a text longer than the model reads (long_texts.py)."""

    TRUNCATE = "truncate"
    REJECT = "reject"
    WINDOWS = "windows"


@dataclass(frozen=True)
class PredictRequest:
    texts: list[str]
    long_texts: LongTexts = LongTexts.TRUNCATE


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a repeated key is ambiguous (parsers disagree on
    which one wins), so it is refused."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedRequest(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def parse_request(body: bytes, max_texts: int, max_chars: int) -> PredictRequest:
    """`{"text": [str, ...], "long_texts": "truncate" | "reject" | "windows"}`
    (`long_texts` optional); raises the matching ApiError otherwise.

    The Content-Type header is not consulted: the original k6 script sends none.
    """
    if not body.strip():
        raise MalformedRequest('empty body: send JSON like {"text": ["I love you!"]}')
    try:
        payload = json.loads(body, object_pairs_hook=unique_keys)
    except UnicodeDecodeError:
        raise MalformedRequest("body is not UTF-8 encoded JSON") from None
    except RecursionError:
        raise MalformedRequest("body is nested too deeply") from None
    except ValueError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValidationFailed('body must be a JSON object like {"text": ["..."]}')
    if "text" not in payload:
        raise ValidationFailed('missing field "text": a list of strings')
    texts = payload["text"]
    if not isinstance(texts, list):
        raise ValidationFailed(f'"text" must be a list of strings, not {_json_type(texts)}')
    if len(texts) > max_texts:
        raise PayloadTooLarge(f"{len(texts)} texts in one request; the limit is {max_texts}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValidationFailed(f'"text"[{i}] must be a string, not {_json_type(text)}')
        if len(text) > max_chars:
            raise PayloadTooLarge(
                f'"text"[{i}] has {len(text)} characters; the limit is {max_chars} '
                f"(the model reads only the first {MAX_TOKENS} tokens of a text)"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationFailed(
                f'"text"[{i}] holds a lone surrogate: not valid Unicode'
            ) from None
    mode = payload.get("long_texts", LongTexts.TRUNCATE.value)
    if not isinstance(mode, str) or mode not in {m.value for m in LongTexts}:
        choices = ", ".join(f'"{m}"' for m in LongTexts)
        raise ValidationFailed(f'"long_texts" must be one of {choices}, not {_json_type(mode)}')
    return PredictRequest(texts, LongTexts(mode))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def to_predictions(scores: Sequence[Sequence[float]], labels: Sequence[str]) -> list[Prediction]:
    """Rows of scores (label order) -> the original project's prediction lists."""
    return [
        [{"label": label, "score": float(score)} for label, score in zip(labels, row, strict=True)]
        for row in scores
    ]


def unique(texts: Sequence[str]) -> list[str]:
    """Distinct texts in first-seen order (duplicates are computed once)."""
    return list(dict.fromkeys(texts))
