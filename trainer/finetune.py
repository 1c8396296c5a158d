"""Connected recipe: fine-tune distilbert-base-uncased on GLUE SST-2 train.

The recipe behind the published checkpoint (its model card): learning rate
1e-5, batch 32, 600 warmup steps, max sequence length 128, 3 epochs. The base
model is downloaded at a pinned revision with every file hash-checked. On two
CPU cores this takes hours; it needs hub access, so it cannot run offline.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from checkpoints import hub
from checkpoints.info import write_info
from checkpoints.staging import staged_dir
from trainer.data import holdout_split, read_tsv
from trainer.loop import train
from trainer.offline import LABELS, Recipe, evaluate

log = logging.getLogger(__name__)
LEARNING_RATE, BATCH_SIZE, WARMUP_STEPS, MAX_LENGTH, EPOCHS = 1e-5, 32, 600, 128, 3


def finetune_from_hub(data: Path, target: Path, cache: Path) -> Path:
    """Fine-tune the pinned base model on `data`, evaluate on the held-out split."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base_dir = cache / f"{hub.BASE.name}-{hub.BASE.revision[:12]}"
    if not (base_dir / "model_info.json").is_file():
        hub.download(base_dir, hub.BASE)  # raises HubUnavailable offline, at once
    started = time.monotonic()
    split = Recipe()  # same held-out split as the offline model: comparable numbers
    train_set, heldout = holdout_split(read_tsv(data), split.holdout_fraction, split.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir,
        local_files_only=True,
        num_labels=2,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    train(
        model, tokenizer, train_set,
        epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
        max_length=MAX_LENGTH, seed=split.seed, warmup_steps=WARMUP_STEPS,
    )  # fmt: skip
    accuracy, f1 = evaluate(model, tokenizer, heldout)
    log.info("held-out accuracy %.4f, F1 %.4f", accuracy, f1)
    with staged_dir(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_info(
            staging,
            name="finetuned-sst2",
            source="trained-hub",
            revision=f"{hub.BASE.repo_id}@{hub.BASE.revision}",
            standin=False,
            accuracy={"heldout_accuracy": round(accuracy, 4), "heldout_f1": round(f1, 4),
                      "heldout_size": len(heldout)},
            training_minutes=round((time.monotonic() - started) / 60, 1),
        )  # fmt: skip
    return target
