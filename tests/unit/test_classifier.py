"""The Classifier with torch engines in-process (standin-tiny): batching and packing never
change scores."""

from __future__ import annotations

from pathlib import Path

import engines
import numpy as np
import pytest
import torch
from shapes import bucketed, shape_warmup
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

import packed_forward
from batching import Packed
from classifier import Classifier
from trainer.data import sst2_sentences as sentences


def torch_classifier(checkpoint: Path, engine: str = "torch-fp32") -> Classifier:
    return Classifier(checkpoint, engines.load(engine, checkpoint, None, threads=2),
                      max_length=512, token_budget=256)  # fmt: skip


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint: Path) -> Classifier:
    return torch_classifier(tiny_checkpoint)


def test_standin_scores_differ_between_texts(classifier: Classifier) -> None:
    # Otherwise every comparison below would pass whatever the forward did.
    positive = classifier.predict(sentences(40))[:, 1]
    assert positive.max() - positive.min() > 0.2


def test_batched_scores_equal_one_by_one(classifier: Classifier) -> None:
    texts = sentences(40)
    batched = classifier.predict(texts)
    single = np.concatenate([classifier.predict([t]) for t in texts])
    assert batched.shape == (40, 2)
    assert np.abs(batched - single).max() <= 1e-4
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-6)


def test_packed_forward_equals_transformers_padded_forward(
    classifier: Classifier, tiny_checkpoint: Path
) -> None:
    texts = [*sentences(30), "word " * 300, ""]
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint).eval()
    padded = classifier.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        expected = torch.softmax(reference(**padded).logits, dim=-1).numpy()
    assert np.abs(classifier.predict(texts) - expected).max() <= 1e-5


def test_attention_runs_torch_s_fused_kernel(classifier: Classifier) -> None:
    """With 3-D inputs, scaled_dot_product_attention ran the unfused math path
    (a bmm per product and a softmax), 2.4x slower on a 512-token text of
    DistilBERT-base than with the 4-D inputs its fused CPU kernel takes."""
    with torch.profiler.profile() as profile:
        classifier.predict(sentences(8))
    ops = {event.key for event in profile.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten::bmm" not in ops


def test_refuses_a_checkpoint_that_is_not_distilbert(tmp_path: Path) -> None:
    config = BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=16)  # fmt: skip
    with pytest.raises(ValueError, match="runs DistilBERT checkpoints, got model_type 'bert'"):
        packed_forward.prepare(BertForSequenceClassification(config))


def test_long_text_does_not_change_short_scores(classifier: Classifier) -> None:
    short = sentences(5)
    alone = classifier.predict(short)
    mixed = classifier.predict([short[0], "word " * 3000, *short[1:]])
    assert np.abs(np.delete(mixed, 1, axis=0) - alone).max() <= 1e-4


def test_truncates_to_max_length(classifier: Classifier) -> None:
    ids = classifier.token_ids(["word " * 3000, ""])
    assert len(ids[0]) == 512
    assert ids[1] == [101, 102]


def test_empty_input(classifier: Classifier) -> None:
    assert classifier.predict([]).shape == (0, 2)


def test_labels_from_checkpoint(classifier: Classifier) -> None:
    assert classifier.labels == ["NEGATIVE", "POSITIVE"]


def test_int8_gives_probabilities_close_to_fp32(tiny_checkpoint: Path) -> None:
    int8 = torch_classifier(tiny_checkpoint, "torch-int8")
    fp32 = torch_classifier(tiny_checkpoint)
    texts = sentences(16)
    quantized, reference = int8.predict(texts), fp32.predict(texts)
    np.testing.assert_allclose(quantized.sum(axis=1), 1.0, atol=1e-6)
    assert np.abs(quantized - reference).max() < 0.05
    assert int8.engine.precision == "int8" and quantized.tolist() != reference.tolist()


def test_unknown_engine_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="engine must be 'auto', 'auto-fp32' or one of"):
        engines.load("torch-fp8", tiny_checkpoint, None, threads=1)


def test_an_engine_that_was_not_built_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="engine openvino-int8 is not built"):
        engines.load("openvino-int8", tiny_checkpoint, tmp_path, threads=1)


def test_shape_warmup_plans_every_padded_size_shortest_first() -> None:
    plan = shape_warmup(512, 16, 512)
    assert [sum(rows) for rows in plan] == list(range(16, 513, 16))
    # A size above the text limit takes several rows; a limit off the step rounds up.
    assert shape_warmup(100, 16, 40)[-1] == [40, 40, 32]
    assert all(max(rows) <= 40 for rows in shape_warmup(100, 16, 40))


class ShapeRecorder:
    """A fake engine's logits that records the padded shape of every call."""

    def __init__(self, step_seconds: float = 0.0) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.now, self.step_seconds = 0.0, step_seconds

    def logits(self, packed: Packed) -> np.ndarray:
        padded = bucketed(packed, engines.SHAPE_TOKENS, engines.SHAPE_TEXTS)
        self.shapes.append((padded.token_ids.size, padded.starts.size))
        self.now += self.step_seconds
        return np.zeros((packed.starts.size, 2), np.float32)


def shape_classifier(checkpoint: Path, recorder: ShapeRecorder, prepares: bool) -> Classifier:
    engine = engines.Engine("openvino-int8", recorder.logits, "fake", prepares_shapes=prepares)
    return Classifier(checkpoint, engine, max_length=512, token_budget=512)


def test_warm_up_runs_the_shape_of_every_single_text_request(tiny_checkpoint: Path) -> None:
    recorder = ShapeRecorder()
    classifier = shape_classifier(tiny_checkpoint, recorder, prepares=True)
    assert classifier.warm_up_shapes(60.0) == (32, 32)
    warmed = list(recorder.shapes)
    assert [tokens for tokens, _ in warmed] == sorted(tokens for tokens, _ in warmed)
    for length in range(1, 513):
        classifier.score_token_ids([[0] * length])
        assert recorder.shapes[-1] in warmed, length


def test_warm_up_stops_at_its_time_budget(tiny_checkpoint: Path) -> None:
    recorder = ShapeRecorder(step_seconds=1.0)
    classifier = shape_classifier(tiny_checkpoint, recorder, prepares=True)
    assert classifier.warm_up_shapes(3.0, clock=lambda: recorder.now) == (3, 32)
    assert [tokens for tokens, _ in recorder.shapes] == [16, 32, 48]


def test_an_engine_without_shapes_is_not_warmed(tiny_checkpoint: Path) -> None:
    recorder = ShapeRecorder()
    classifier = shape_classifier(tiny_checkpoint, recorder, prepares=False)
    assert classifier.warm_up_shapes(60.0) == (0, 0)
    assert recorder.shapes == []
