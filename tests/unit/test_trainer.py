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


class CharTokenizer:
    """Each character's code point mod 50 (+1; 0 pads): enough to train on."""

    pad_token_id = 0

    def __call__(self, texts: list[str], truncation: bool, max_length: int) -> dict:
        return {"input_ids": [[ord(c) % 50 + 1 for c in t][:max_length] for t in texts]}


def tiny_classifier(n_layers: int) -> object:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=51, dim=32, n_layers=n_layers, n_heads=4, hidden_dim=64,
                              max_position_embeddings=32, dropout=0.0, attention_dropout=0.0,
                              seq_classif_dropout=0.0)  # fmt: skip
    return DistilBertForSequenceClassification(config)


def test_fused_adamw_makes_the_same_updates() -> None:
    import torch

    from trainer.loop import train

    examples = [Example(f"{'good' if i % 2 else 'bad'} film {i}", i % 2) for i in range(64)]
    weights = []
    for fused in (False, True):
        model = tiny_classifier(n_layers=1)
        train(model, CharTokenizer(), examples, epochs=2, batch_size=16, learning_rate=1e-2,
              max_length=32, seed=1, fused_adamw=fused)  # fmt: skip
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    moved = (weights[0] - weights[1]).abs().max().item()
    assert moved < 1e-4, moved


def test_predict_labels_sorts_by_length_but_answers_in_input_order() -> None:
    from types import SimpleNamespace

    import torch

    from trainer.loop import predict_labels

    widths: list[int] = []

    def parity_of_length(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> object:
        """Label 1 for texts of odd token count."""
        widths.append(input_ids.shape[1])
        odd = attention_mask.sum(dim=1) % 2
        return SimpleNamespace(logits=torch.stack([1 - odd, odd], dim=1).float())

    texts = ["x" * n for n in random.Random(3).sample(range(1, 41), 40)]
    labels = predict_labels(parity_of_length, CharTokenizer(), texts, max_length=64, batch_size=8)
    assert labels == [len(t) % 2 for t in texts]
    assert widths == [8, 16, 24, 32, 40]  # sorted: each batch padded only to its own longest


def padded_batch() -> tuple[object, object]:
    import torch

    lengths = [16, 9, 3, 12]
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.zeros((len(lengths), 16), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, n in enumerate(lengths):
        input_ids[row, :n] = torch.randint(1, 51, (n,), generator=generator)
        mask[row, :n] = 1
    return input_ids, mask


def test_first_token_classify_gives_the_full_forwards_logits_and_gradients() -> None:
    import torch

    from trainer.first_token import classify, full_logits

    model = tiny_classifier(n_layers=2)
    input_ids, mask = padded_batch()
    logits, grads = [], []
    for forward in (classify, full_logits):
        model.zero_grad()
        logits.append(forward(model, input_ids, mask))
        (logits[-1] * torch.tensor([1.0, -2.0])).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (logits[0] - logits[1]).abs().max().item() < 1e-5
    assert (grads[0] - grads[1]).abs().max().item() < 1e-5


def test_first_token_classify_skips_the_last_layers_unread_work() -> None:
    """Three layers, 16 tokens: the last layer's queries, output and feed-forward
    for [CLS] alone cut the multiply-adds to about 0.77 of the full forward."""
    from torch.utils.flop_counter import FlopCounterMode

    from trainer.first_token import classify, full_logits

    model = tiny_classifier(n_layers=3)
    input_ids, mask = padded_batch()
    flops = []
    for forward in (classify, full_logits):
        with FlopCounterMode(display=False) as counter:
            forward(model, input_ids, mask)
        flops.append(counter.get_total_flops())
    assert flops[0] < 0.8 * flops[1], flops
