"""Place a checkpoint into a Triton model repository.

Layout (what `model_repository/distilbert_sst2/config.pbtxt` expects):
    distilbert_sst2/labels.txt       one label per line, from config.json id2label
    distilbert_sst2/1/checkpoint/    the Hugging Face checkpoint (a link locally,
                                     a copy in the image)
    distilbert_sst2/1/engines/       its converted engines (modelctl.convert), likewise
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from checkout.paths import MODEL_NAME


def labels_of(checkpoint: Path) -> list[str]:
    """The checkpoint's labels in id order, from its config.json `id2label`."""
    config = json.loads((checkpoint / "config.json").read_text())
    id2label = {int(k): v for k, v in config.get("id2label", {}).items()}
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 2:
        raise ValueError(f"{checkpoint}/config.json has no usable id2label: {id2label}")
    return [id2label[i] for i in range(len(id2label))]


def install(
    checkpoint: Path, repository: Path, *, engines: Path | None = None, copy: bool = False
) -> Path:
    """Make `repository` serve `checkpoint` (and its converted `engines`);
    returns the model directory."""
    model_dir = repository / MODEL_NAME
    if not (model_dir / "config.pbtxt").is_file():
        raise FileNotFoundError(f"{model_dir}/config.pbtxt not found: not a model repository")
    labels = labels_of(checkpoint)
    _place(checkpoint, model_dir / "1" / "checkpoint", copy=copy)
    _place(engines, model_dir / "1" / "engines", copy=copy)
    (model_dir / "labels.txt").write_text("\n".join(labels) + "\n")
    return model_dir


def _place(source: Path | None, dest: Path, *, copy: bool) -> None:
    """Replace `dest` by a link to (or a copy of) `source`; None: remove it."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        shutil.rmtree(dest)
    if source is None:
        return
    if copy:
        shutil.copytree(source, dest)
        return
    tmp = dest.with_name(f".{dest.name}.tmp")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(source.resolve(), target_is_directory=True)
    os.replace(tmp, dest)
