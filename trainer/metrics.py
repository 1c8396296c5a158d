"""Accuracy and F1 (POSITIVE as the positive class)."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy_f1(labels: Sequence[int], predicted: Sequence[int]) -> tuple[float, float]:
    if len(labels) != len(predicted) or not labels:
        raise ValueError("need equally many labels and predictions, at least one")
    correct = sum(a == b for a, b in zip(labels, predicted, strict=True))
    tp = sum(a == 1 and b == 1 for a, b in zip(labels, predicted, strict=True))
    fp = sum(a == 0 and b == 1 for a, b in zip(labels, predicted, strict=True))
    fn = sum(a == 1 and b == 0 for a, b in zip(labels, predicted, strict=True))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return correct / len(labels), f1
