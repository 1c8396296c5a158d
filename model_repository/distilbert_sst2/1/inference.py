"""Pure steps of the distilbert_sst2 model, testable without Triton or torch.

execute() = decode texts per request -> flatten -> plan length-sorted
micro-batches -> pack (no padding) -> forward -> softmax -> scatter back ->
split per request.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group indices into micro-batches of similar length.

    Indices are sorted by length, then cut so that every micro-batch holds at
    most `token_budget` tokens in total (the texts are packed end to end, so
    that is what a forward pass computes). A single text longer than the
    budget gets its own batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for index in order:
        if current and tokens + lengths[index] > token_budget:
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class Packed:
    """Texts laid end to end in one row, with what attention needs to keep
    them apart: no padding token is ever computed."""

    token_ids: NDArray[np.int64]  # [T] every text's tokens, in order
    positions: NDArray[np.int64]  # [T] position of each token within its text
    segments: NDArray[np.int64]  # [T] which text each token belongs to
    starts: NDArray[np.int64]  # [B] offset of each text's first ([CLS]) token


def pack(token_ids: Sequence[Sequence[int]]) -> Packed:
    """Concatenate texts (each non-empty) into one packed sequence."""
    lengths = np.array([len(row) for row in token_ids], dtype=np.int64)
    if (lengths < 1).any():
        raise ValueError("every text needs at least one token")
    starts = np.cumsum(lengths) - lengths
    flat = np.fromiter(itertools.chain.from_iterable(token_ids), np.int64, int(lengths.sum()))
    positions = np.arange(flat.size, dtype=np.int64) - np.repeat(starts, lengths)
    segments = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    return Packed(flat, positions, segments, starts)


def softmax(logits: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """Row-wise softmax in float32; rows sum to 1."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs: NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs


def split_rows(rows: NDArray[np.float32], counts: Iterable[int]) -> list[NDArray[np.float32]]:
    """Split stacked rows back into one block per request."""
    bounds = np.cumsum([0, *counts])
    return [rows[start:end] for start, end in itertools.pairwise(bounds)]


def cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """CPUs this process may use: the cgroup v2 limit if set, else the core count."""
    cores = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return min(cores, int(quota) / int(period))


def intra_op_threads(setting: str, instances: int, quota: float) -> int:
    """Torch threads per model instance: `auto` splits the CPU quota evenly."""
    if setting != "auto":
        threads = int(setting)
        if threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1 or 'auto', got {setting!r}")
        return threads
    return max(1, int(quota // max(1, instances)))


def checkpoint_digest(checkpoint: Path, exclude: Sequence[str] = ("model_info.json",)) -> str:
    """sha256 over every file of the checkpoint (relative path and content)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        rel = path.relative_to(checkpoint).as_posix()
        if rel in exclude or rel.startswith("."):
            continue
        digest.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint(content_digest: str, serving: dict[str, Any]) -> str:
    """Identity of the predictions: the weights plus everything that changes scores."""
    blob = json.dumps({"content": content_digest, **serving}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """config.pbtxt `parameters` as a flat str -> str mapping."""
    return {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}
