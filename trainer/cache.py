"""Train the offline model once per machine: cached by content hash."""

from __future__ import annotations

import logging
from pathlib import Path

from trainer.offline import Recipe, content_hash, train_offline

log = logging.getLogger(__name__)


def offline_model_dir(data: Path, cache: Path, recipe: Recipe | None = None) -> Path:
    return cache / f"trained-offline-{content_hash(data, recipe or Recipe())}"


def ensure_offline_model(data: Path, cache: Path, *, force: bool = False) -> Path:
    """The cached checkpoint for (data, recipe, code), training it if absent."""
    if not data.is_file():
        raise FileNotFoundError(f"no training data at {data} (set SST2_TRAIN_TSV)")
    target = offline_model_dir(data, cache)
    if (target / "model_info.json").is_file() and not force:
        log.info("reusing %s", target)
        return target
    log.info("training the offline model into %s (once per machine)", target)
    return train_offline(data, target)
