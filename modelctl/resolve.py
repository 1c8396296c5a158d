"""Turn a `MODEL=` value into a checkpoint directory on disk."""

from __future__ import annotations

import logging
from pathlib import Path

from modelctl import hub, standins
from modelctl.spec import AUTO, HUB, STANDIN_BASE, ModelSpec

log = logging.getLogger(__name__)


def hub_dir(cache: Path) -> Path:
    return cache / f"hub-{hub.REVISION[:12]}"


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
    target = cache / spec.name
    return target if _cached(target) else standins.build(spec.name, target)


def _resolve_auto(cache: Path) -> Path:
    """The real checkpoint if present or downloadable, else the best offline model."""
    target = hub_dir(cache)
    if _cached(target):
        return target
    try:
        return hub.download(target)
    except hub.HubUnavailable as exc:
        log.warning("hub unavailable (%s); falling back to an offline model", exc)
    log.warning("MODEL=auto: serving %s, which has RANDOM WEIGHTS", STANDIN_BASE)
    return resolve(ModelSpec(STANDIN_BASE), cache)
