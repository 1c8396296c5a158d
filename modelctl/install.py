"""Place a checkpoint into a Triton model repository.

Layout (what `model_repository/distilbert_sst2/config.pbtxt` expects):
    distilbert_sst2/labels.txt       one label per line, from config.json id2label
    distilbert_sst2/1/checkpoint/    the Hugging Face checkpoint (a link locally,
                                     a copy in the image)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

MODEL_NAME = "distilbert_sst2"


def labels_of(checkpoint: Path) -> list[str]:
    """The checkpoint's labels in id order, from its config.json `id2label`."""
    config = json.loads((checkpoint / "config.json").read_text())
    id2label = {int(k): v for k, v in config.get("id2label", {}).items()}
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 2:
        raise ValueError(f"{checkpoint}/config.json has no usable id2label: {id2label}")
    return [id2label[i] for i in range(len(id2label))]


def install(checkpoint: Path, repository: Path, *, copy: bool = False) -> Path:
    """Make `repository` serve `checkpoint`; returns the model directory."""
    model_dir = repository / MODEL_NAME
    if not (model_dir / "config.pbtxt").is_file():
        raise FileNotFoundError(f"{model_dir}/config.pbtxt not found: not a model repository")
    labels = labels_of(checkpoint)
    dest = model_dir / "1" / "checkpoint"
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.is_dir():
        shutil.rmtree(dest)
    if copy:
        shutil.copytree(checkpoint, dest)
    else:
        tmp = dest.with_name(".checkpoint.tmp")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(checkpoint.resolve(), target_is_directory=True)
        os.replace(tmp, dest)
    (model_dir / "labels.txt").write_text("\n".join(labels) + "\n")
    return model_dir
