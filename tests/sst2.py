"""Real SST-2 sentences, read from ../shared at run time (never copied in)."""

from __future__ import annotations

import csv

from tests.servers import ROOT

TRAIN_TSV = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"


def sentences(count: int, *, offset: int = 0) -> list[str]:
    """`count` sentences from SST-2 train, in file order from `offset`."""
    out: list[str] = []
    with TRAIN_TSV.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for i, row in enumerate(reader):
            if i >= offset:
                out.append(row["text"])
            if len(out) == count:
                break
    return out
