"""Where checkpoints are cached."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Where fetched, built and trained checkpoints live: per user, so every
    checkout on a machine shares them (`MODEL_CACHE` overrides)."""
    if "MODEL_CACHE" in os.environ:
        return Path(os.environ["MODEL_CACHE"])
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return xdg / "sst2-serving" / "models"
