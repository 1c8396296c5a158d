"""The DistilBERT classifier behind the Triton model: tokenizer + one engine
(engines.py), no Triton."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import engines
import numpy as np
from engines import Engine
from numpy.typing import NDArray
from shapes import shape_warmup
from transformers import AutoConfig, AutoTokenizer

from batching import pack, plan_micro_batches, softmax
from packed_forward import require_distilbert
from tokens import bounded_token_ids


class Classifier:
    """Scores texts in length-sorted, packed micro-batches (no padding is
    computed), in the caller's order, with `engine`."""

    def __init__(
        self, checkpoint: Path, engine: Engine, *, max_length: int, token_budget: int
    ) -> None:
        config = AutoConfig.from_pretrained(checkpoint, local_files_only=True)
        require_distilbert(config)  # every engine runs the DistilBERT packed forward
        self.engine = engine
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.max_length = min(max_length, config.max_position_embeddings)
        self.token_budget = token_budget

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Tokenize with special tokens, truncated to the model's max length;
        a long text is tokenized only as far as needed (tokens.bounded_token_ids)."""
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
        for batch in plan:
            probs[batch] = softmax(self.engine.logits(pack([ids[i] for i in batch])))
        return probs

    def warm_up_shapes(
        self, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> tuple[int, int]:
        """Run each input shape the engine prepares on first use (one per
        engines.SHAPE_TOKENS of a micro-batch, with one slot of texts),
        shortest first, until `seconds` have passed, so a fresh server's first
        requests do not pay for it. Returns (shapes run, shapes in all)."""
        if not self.engine.prepares_shapes:
            return 0, 0
        limit = max(self.token_budget, self.max_length)
        plan = shape_warmup(limit, engines.SHAPE_TOKENS, self.max_length)
        started = clock()
        for done, lengths in enumerate(plan):
            if clock() - started >= seconds:
                return done, len(plan)
            self.score_token_ids([[0] * n for n in lengths])
        return len(plan), len(plan)
