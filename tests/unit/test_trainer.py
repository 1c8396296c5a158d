"""Trainer pieces that need no training: data, split, metrics, cache key."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from trainer.data import Example, holdout_split, read_tsv
from trainer.loop import length_bucketed_batches
from trainer.metrics import accuracy_f1
from trainer.offline import Recipe, content_hash


def test_read_tsv_with_and_without_header(tmp_path: Path) -> None:
    path = tmp_path / "a.tsv"
    path.write_text("sentence\tlabel\ngood movie \t1\nbad\t0\n")
    assert read_tsv(path) == [Example("good movie", 1), Example("bad", 0)]
    path.write_text("fine\t1\n")
    assert read_tsv(path) == [Example("fine", 1)]
    path.write_text("no label here\n")
    with pytest.raises(ValueError, match="expected text"):
        read_tsv(path)


def test_holdout_split_is_fixed_and_disjoint() -> None:
    examples = [Example(str(i), i % 2) for i in range(1000)]
    train, heldout = holdout_split(examples, 0.1, seed=7)
    assert (len(train), len(heldout)) == (900, 100)
    assert not {e.text for e in train} & {e.text for e in heldout}
    assert holdout_split(examples, 0.1, seed=7) == (train, heldout)
    assert holdout_split(examples, 0.1, seed=8)[1] != heldout


def test_accuracy_f1() -> None:
    assert accuracy_f1([1, 0, 1, 1], [1, 0, 0, 1]) == (0.75, pytest.approx(0.8))
    assert accuracy_f1([0, 0], [0, 0]) == (1.0, 0.0)
    with pytest.raises(ValueError, match="equally many"):
        accuracy_f1([1], [])


def test_length_buckets_cover_every_row_once_with_little_padding() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 60) for _ in range(1000)]
    batches = length_bucketed_batches(lengths, 32, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)

    def mean_spread(groups: list[list[int]]) -> float:
        return sum(max(lengths[i] for i in g) - min(lengths[i] for i in g) for g in groups) / len(
            groups
        )

    unsorted = [list(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)]
    assert mean_spread(batches) * 5 < mean_spread(unsorted)  # ~55 for unsorted batches


def test_content_hash_changes_with_data_and_recipe(tmp_path: Path) -> None:
    data = tmp_path / "train.tsv"
    data.write_text("a\t1\n")
    first = content_hash(data, Recipe())
    assert content_hash(data, Recipe(epochs=5)) != first
    data.write_text("a\t0\n")
    assert content_hash(data, Recipe()) != first
