"""Long documents read in windows, pure: where the windows start and end,
how much each weighs, and how their answers combine into one.

A document longer than the model reads (512 tokens with [CLS] and [SEP]) is
cut into windows of at most `size` tokens, each starting where a word
starts (so a window, tokenized on its own, gives the same tokens), the next
one starting about `overlap` tokens before the previous one ended. Every
window is scored as a text of its own. The document's answer is the softmax
of the windows' logits averaged with each token counted once: a window
weighs the tokens it reads that no earlier window read. The model returns
probabilities, whose logarithms differ from the logits by one constant per
window; softmax cancels it, so averaging log-probabilities with the same
weights gives the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


class TooManyWindows(ValueError):
    """A document needs more windows than allowed."""


@dataclass(frozen=True)
class Window:
    start: int  # first token (index into the document's tokens, no [CLS])
    end: int  # one past the last token
    weight: int  # tokens no earlier window read


def word_start_at_or_before(word_starts: Sequence[bool], index: int, floor: int) -> int:
    """The last token at or before `index` that starts a word, but after
    `floor`; `index` itself if no word starts there (one very long word)."""
    for i in range(index, floor, -1):
        if word_starts[i]:
            return i
    return index


def plan_windows(
    word_starts: Sequence[bool], size: int, overlap: int, max_windows: int
) -> list[Window]:
    """Windows over a document of `len(word_starts)` tokens (True where a
    token starts a word), each at most `size` tokens, consecutive ones
    sharing about `overlap` tokens; raises TooManyWindows past `max_windows`."""
    total = len(word_starts)
    if total <= size:
        return [Window(0, total, total)]
    windows: list[Window] = []
    start = 0
    while True:
        end = total if total - start <= size else start + size
        if end < total:  # end where a word starts, so the last word is whole
            end = word_start_at_or_before(word_starts, end, start)
        read_before = windows[-1].end if windows else 0
        windows.append(Window(start, end, end - read_before))
        if end == total:
            return windows
        if len(windows) == max_windows:
            raise TooManyWindows(f"more than {max_windows} windows")
        start = word_start_at_or_before(word_starts, max(end - overlap, start + 1), start)


def combine(probabilities: Sequence[Sequence[float]], weights: Sequence[int]) -> list[float]:
    """softmax of the `weights`-averaged logits of each window's probabilities."""
    total = sum(weights)
    labels = len(probabilities[0])
    mean = [
        sum(w * math.log(max(row[k], 1e-30)) for row, w in zip(probabilities, weights, strict=True))
        / total
        for k in range(labels)
    ]
    top = max(mean)
    exp = [math.exp(m - top) for m in mean]
    return [e / sum(exp) for e in exp]
