"""Turn a `MODEL=` value into a checkpoint directory on disk."""

from __future__ import annotations

import logging
from pathlib import Path

from checkpoints import hub
from modelctl import standins
from modelctl.spec import AUTO, HUB, STANDIN_BASE, TRAINED_OFFLINE, ModelSpec

log = logging.getLogger(__name__)


def hub_dir(cache: Path) -> Path:
    return cache / f"hub-{hub.SST2.revision[:12]}"


def _cached(path: Path) -> bool:
    return (path / "model_info.json").is_file()


def resolve(spec: ModelSpec, cache: Path) -> Path:
    """Return a ready checkpoint for `spec`, fetching or building it if needed."""
    if spec.path is not None:
        return spec.path
    if spec.name == HUB:
        target = hub_dir(cache)
        return target if _cached(target) else hub.download(target)
    if spec.name == AUTO:
        return _resolve_auto(cache)
    if spec.name == TRAINED_OFFLINE:
        return _trained_offline(cache)
    target = cache / spec.name
    return target if standins.is_current(target) else standins.build(spec.name, target)


def _trained_offline(cache: Path) -> Path:
    from trainer.cache import ensure_offline_model
    from trainer.data import default_train_tsv

    return ensure_offline_model(default_train_tsv(), cache)


def _resolve_auto(cache: Path) -> Path:
    """The real checkpoint if present or downloadable, else the best offline model:
    the SST-2-trained one when the data is there, else the random stand-in."""
    target = hub_dir(cache)
    if _cached(target):
        return target
    try:
        return hub.download(target)
    except hub.HubUnavailable as exc:
        log.warning("hub unavailable (%s); falling back to an offline model", exc)
    try:
        return _trained_offline(cache)
    except FileNotFoundError as exc:
        log.warning("cannot train offline: %s", exc)
    log.warning("MODEL=auto: serving %s, which has RANDOM WEIGHTS", STANDIN_BASE)
    return resolve(ModelSpec(STANDIN_BASE), cache)
