"""Real SST-2 sentences, read from ../shared at run time (never copied in)."""

from __future__ import annotations

from functools import cache

from trainer.data import Example, default_train_tsv, read_tsv


@cache
def _train() -> list[Example]:
    return read_tsv(default_train_tsv())


def sentences(count: int, *, offset: int = 0) -> list[str]:
    """`count` sentences from SST-2 train, in file order from `offset`."""
    return [e.text for e in _train()[offset : offset + count]]
