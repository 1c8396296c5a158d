"""The DistilBERT classifier behind the Triton model (torch; no Triton)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import packed_forward
from batching import pack, plan_micro_batches, softmax
from tokens import bounded_token_ids

PRECISIONS = ("fp32", "int8")


def quantized(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """`int8`: dynamic quantization of every Linear layer (int8 weights,
    activations quantized per batch); `fp32`: the model as loaded."""
    if precision != "int8":
        return model
    with warnings.catch_warnings():
        # torch 2.13 marks torch.ao.quantization and its quantized tensor types
        # deprecated (in favour of torchao); the CPU kernels are still there.
        warnings.filterwarnings("ignore", message=".*quantize.*deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
        int8: torch.nn.Module = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8
        )
    return int8


class Classifier:
    """Scores texts in length-sorted, packed micro-batches (packed_forward: no
    padding is computed), in the caller's order."""

    def __init__(
        self,
        checkpoint: Path,
        *,
        max_length: int,
        token_budget: int,
        precision: str = "fp32",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            checkpoint, local_files_only=True
        ).eval()
        config = model.config
        self.model = quantized(packed_forward.prepare(model), precision)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.max_length = min(max_length, config.max_position_embeddings)
        self.token_budget = token_budget

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Tokenize with special tokens, truncated to the model's max length;
        a long text is tokenized only as far as needed (inference.bounded_token_ids)."""
        return bounded_token_ids(texts, self._tokenize, self.max_length)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def predict(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Probabilities of shape [len(texts), num_labels], rows in input order."""
        return self.score_token_ids(self.token_ids(texts) if texts else [])

    def score_token_ids(self, ids: Sequence[Sequence[int]]) -> NDArray[np.float32]:
        """The forward path alone: plan micro-batches, run each, softmax."""
        probs = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        plan = plan_micro_batches([len(row) for row in ids], self.token_budget)
        with torch.inference_mode():
            for batch in plan:
                logits = packed_forward.logits(self.model, pack([ids[i] for i in batch]))
                probs[batch] = softmax(logits.float().numpy())
        return probs
