"""What `MODEL=...` may name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HUB = "hub"
STANDIN_BASE = "standin-base"
STANDIN_TINY = "standin-tiny"
TRAINED_OFFLINE = "trained-offline"
AUTO = "auto"
NAMED = (AUTO, HUB, TRAINED_OFFLINE, STANDIN_BASE, STANDIN_TINY)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed `MODEL=` value: one of NAMED, or a checkpoint directory."""

    name: str
    path: Path | None = None

    @classmethod
    def parse(cls, value: str) -> ModelSpec:
        value = value.strip()
        if value in NAMED:
            return cls(name=value)
        path = Path(value).expanduser()
        if not (path / "config.json").is_file():
            raise ValueError(
                f"MODEL={value!r} is neither one of {', '.join(NAMED)} "
                "nor a Hugging Face checkpoint directory (no config.json there)"
            )
        return cls(name="path", path=path.resolve())
