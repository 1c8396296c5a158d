"""Who the served model is: the fingerprint of its predictions and the
MODEL_INFO it reports (typed here, parsed by cache_proxy.backend.ModelIdentity)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def checkpoint_digest(checkpoint: Path, exclude: Sequence[str] = ("model_info.json",)) -> str:
    """sha256 over every file of the checkpoint (relative path and content)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        rel = path.relative_to(checkpoint).as_posix()
        if rel in exclude or rel.startswith("."):
            continue
        digest.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint(content_digest: str, serving: dict[str, Any]) -> str:
    """Identity of the predictions: the weights plus everything that changes scores."""
    blob = json.dumps({"content": content_digest, **serving}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelInfo:
    """The MODEL_INFO JSON: provenance (model_info.json written by modelctl),
    labels, and what the serving changes (engine and its files, truncation,
    forward path)."""

    name: str
    source: str
    revision: str | None
    standin: bool
    labels: list[str]
    fingerprint: str
    precision: str
    engine: str
    engine_files: str
    max_sequence_length: int
    forward: str
    extra: dict[str, Any] = field(default_factory=dict)  # warning, accuracy when known

    def to_json(self) -> bytes:
        fields = asdict(self)
        return json.dumps({**fields.pop("extra"), **fields}, sort_keys=True).encode()


PROVENANCE_EXTRAS = ("warning", "accuracy")


def read_provenance(checkpoint: Path) -> dict[str, Any]:
    """model_info.json written by modelctl ({} for a bare checkpoint)."""
    info_file = checkpoint / "model_info.json"
    provenance: dict[str, Any] = json.loads(info_file.read_text()) if info_file.is_file() else {}
    return provenance


def describe(
    checkpoint: Path,
    labels: Sequence[str],
    serving: dict[str, Any],
    content_digest: str | None = None,
) -> ModelInfo:
    """The identity of `checkpoint` served with `serving` (precision, engine,
    engine_files, max_sequence_length, forward): its fingerprint covers weights
    and serving (`content_digest`: checkpoint_digest(checkpoint), if already known)."""
    provenance = read_provenance(checkpoint)
    return ModelInfo(
        name=provenance.get("name", checkpoint.resolve().name),
        source=provenance.get("source", "path"),
        revision=provenance.get("revision"),
        standin=bool(provenance.get("standin", False)),
        labels=list(labels),
        fingerprint=fingerprint(content_digest or checkpoint_digest(checkpoint), serving),
        precision=serving["precision"],
        engine=serving["engine"],
        engine_files=serving["engine_files"],
        max_sequence_length=serving["max_sequence_length"],
        forward=serving["forward"],
        extra={k: provenance[k] for k in PROVENANCE_EXTRAS if k in provenance},
    )
