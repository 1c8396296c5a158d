"""Labelled sentences from TSV files (GLUE SST-2 layout: sentence<TAB>label)."""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from checkout.paths import SHARED_SST2_TRAIN


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # 0 NEGATIVE, 1 POSITIVE


def default_train_tsv() -> Path:
    """GLUE SST-2 train beside the checkout (`SST2_TRAIN_TSV` overrides)."""
    default = SHARED_SST2_TRAIN
    return Path(os.environ.get("SST2_TRAIN_TSV", default))


def read_tsv(path: Path) -> list[Example]:
    """Rows of `text<TAB>label`; a header row (sentence/text, label) is skipped."""
    examples = []
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)):
            if not row or (n == 0 and row[-1].strip().lower() == "label"):
                continue
            if len(row) < 2 or row[-1].strip() not in ("0", "1"):
                raise ValueError(f"{path}:{n + 1}: expected text<TAB>0|1, got {row!r}")
            examples.append(Example(text="\t".join(row[:-1]).strip(), label=int(row[-1])))
    return examples


def holdout_split(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A fixed, seeded split: (train, held-out)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = int(len(examples) * fraction)
    heldout = sorted(order[:cut])
    train = sorted(order[cut:])
    return [examples[i] for i in train], [examples[i] for i in heldout]


@cache
def _sst2_train() -> list[Example]:
    return read_tsv(default_train_tsv())


def sst2_sentences(count: int, *, offset: int = 0) -> list[str]:
    """`count` SST-2 train sentences in file order from `offset` (tests, benchmarks)."""
    return [e.text for e in _sst2_train()[offset : offset + count]]
