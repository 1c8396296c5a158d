"""`model_info.json`: the provenance note written next to every checkpoint.

The Triton model reads it to report where its weights came from; the content
fingerprint is computed by the Triton model itself from the files it loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

INFO_FILE = "model_info.json"


def write_info(checkpoint: Path, **fields: Any) -> None:
    """Write provenance fields (name, source, revision, standin, ...)."""
    (checkpoint / INFO_FILE).write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")


def read_info(checkpoint: Path) -> dict[str, Any]:
    """Read provenance fields; an unmarked directory is a user-supplied path."""
    path = checkpoint / INFO_FILE
    if not path.is_file():
        return {"name": checkpoint.name, "source": "path", "standin": False}
    info: dict[str, Any] = json.loads(path.read_text())
    return info
