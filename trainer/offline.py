"""Offline recipe: a small DistilBERT trained from scratch on SST-2 train.

No hub: the WordPiece vocabulary is learned from the training text with
`tokenizers`, the weights start random. Sized to train in a few minutes on two
cores. Part of train.tsv is held out (fixed seed) to measure accuracy. The
result is cached by a content hash of data + recipe + code, so it is trained
once per machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from checkpoints.info import write_info
from checkpoints.staging import staged_dir
from trainer.data import Example, holdout_split, read_tsv
from trainer.loop import predict_labels, train
from trainer.metrics import accuracy_f1

log = logging.getLogger(__name__)
LABELS = ("NEGATIVE", "POSITIVE")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class Recipe:
    vocab_size: int = 8000
    dim: int = 256
    n_layers: int = 3
    n_heads: int = 4
    hidden_dim: int = 512  # 1024: slower, same accuracy (trainer/README.md)
    # Hidden and attention dropout. DistilBERT's 0.1 spends a step's time on
    # random masks; without, held-out accuracy held (trainer/README.md).
    dropout: float = 0.0
    train_max_length: int = 64
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 5e-4
    holdout_fraction: float = 0.05
    seed: int = 20221
    fused_adamw: bool = True  # one kernel for every parameter: the same updates, faster
    # The last layer computed for [CLS] alone (trainer/first_token.py): the
    # same function, less time a step (trainer/README.md).
    cls_only_last_layer: bool = True


# The code that shapes the weights; editing anything else must not retrain.
TRAINING_CODE = ("offline.py", "loop.py", "first_token.py", "data.py")


def content_hash(data: Path, recipe: Recipe) -> str:
    """Changes with the data, the recipe or the training code."""
    digest = hashlib.sha256(data.read_bytes())
    digest.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    for name in TRAINING_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


def build_tokenizer(texts: list[str], vocab_size: int) -> object:
    """A lowercase WordPiece tokenizer learned from `texts`, saved as DistilBERT's."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import DistilBertTokenizer

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS)
    wordpiece.train_from_iterator(texts, trainer)
    vocab = wordpiece.get_vocab()
    return DistilBertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)


def train_offline(data: Path, target: Path, recipe: Recipe | None = None) -> Path:
    """Train, evaluate on the held-out split, write a checkpoint to `target`."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    recipe = recipe or Recipe()
    started = time.monotonic()
    examples = read_tsv(data)
    train_set, heldout = holdout_split(examples, recipe.holdout_fraction, recipe.seed)
    log.info("training on %d phrases, holding out %d (%s)", len(train_set), len(heldout), data)
    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer([e.text for e in train_set], recipe.vocab_size)
    config = DistilBertConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        dim=recipe.dim,
        n_layers=recipe.n_layers,
        n_heads=recipe.n_heads,
        hidden_dim=recipe.hidden_dim,
        dropout=recipe.dropout,
        attention_dropout=recipe.dropout,
        max_position_embeddings=512,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = DistilBertForSequenceClassification(config)
    train(
        model, tokenizer, train_set,
        epochs=recipe.epochs, batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate, max_length=recipe.train_max_length,
        seed=recipe.seed, fused_adamw=recipe.fused_adamw,
        cls_only_last_layer=recipe.cls_only_last_layer,
    )  # fmt: skip
    accuracy, f1 = evaluate(model, tokenizer, heldout)
    minutes = (time.monotonic() - started) / 60
    log.info("held-out accuracy %.4f, F1 %.4f after %.1f min", accuracy, f1, minutes)
    with staged_dir(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)  # type: ignore[attr-defined]
        write_info(
            staging,
            name="trained-offline",
            source="trained-offline",
            revision=target.name.rsplit("-", 1)[-1],
            standin=False,
            accuracy={"heldout_accuracy": round(accuracy, 4), "heldout_f1": round(f1, 4),
                      "heldout_size": len(heldout)},
            recipe=asdict(recipe),
            training_minutes=round(minutes, 1),
        )  # fmt: skip
    return target


def evaluate(model: object, tokenizer: object, examples: list[Example]) -> tuple[float, float]:
    predicted = predict_labels(model, tokenizer, [e.text for e in examples], max_length=512)
    return accuracy_f1([e.label for e in examples], predicted)
