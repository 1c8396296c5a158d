"""Accuracy/F1 of a checkpoint in-process (per precision) and through /predict."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from checkout.repository import SOURCE as MODEL_SOURCE
from checkout.repository import load_classifier
from checkpoints.info import read_info
from trainer.data import Example, default_train_tsv, holdout_split, read_tsv
from trainer.metrics import accuracy_f1
from trainer.offline import Recipe

INSTALLED = MODEL_SOURCE / "1" / "checkpoint"
INSTALLED_ENGINES = MODEL_SOURCE / "1" / "engines"


def eval_examples(data: Path | None, checkpoint: Path) -> tuple[str, list[Example]]:
    """The given TSV, or the offline model's own held-out split."""
    if data is not None:
        return str(data), read_tsv(data)
    info = read_info(checkpoint)
    if info.get("source") != "trained-offline":
        raise SystemExit("--data is required unless the model is trained-offline")
    recipe = Recipe(**info.get("recipe", {}))
    _, heldout = holdout_split(read_tsv(default_train_tsv()), recipe.holdout_fraction, recipe.seed)
    return "held-out split of SST-2 train", heldout


def in_process(
    checkpoint: Path, engine: str, texts: Sequence[str], engines_dir: Path | None = None
) -> list[int]:
    scores = load_classifier(checkpoint, engine, engines_dir).predict(texts)
    return [int(i) for i in scores.argmax(axis=1)]


def through_service(url: str, texts: Sequence[str], batch: int = 64) -> list[int]:
    predicted: list[int] = []
    for start in range(0, len(texts), batch):
        body = json.dumps({"text": list(texts[start : start + batch])}).encode()
        with urllib.request.urlopen(f"{url}/predict", data=body, timeout=60) as response:
            for entry in json.loads(response.read())["predictions"]:
                scores = [p["score"] for p in entry]
                predicted.append(scores.index(max(scores)))
    return predicted


def served_engine(url: str) -> str:
    with urllib.request.urlopen(f"{url}/model", timeout=10) as response:
        return str(json.loads(response.read())["model"].get("engine"))


def run_eval(data: Path | None, model: Path | None, url: str | None, engines: Sequence[str]) -> int:
    checkpoint = (model or INSTALLED).resolve()
    engines_dir = None if model else INSTALLED_ENGINES
    source, examples = eval_examples(data, checkpoint)
    texts, labels = [e.text for e in examples], [e.label for e in examples]
    rows = []
    for engine in engines:
        accuracy, f1 = accuracy_f1(labels, in_process(checkpoint, engine, texts, engines_dir))
        rows.append(("in-process", engine, accuracy, f1))
    if url:
        accuracy, f1 = accuracy_f1(labels, through_service(url, texts))
        rows.append((f"service {url}", served_engine(url), accuracy, f1))
    print(
        f"model: {checkpoint.name} ({read_info(checkpoint).get('source')}); data: {source}, "
        f"{len(examples)} examples"
    )
    print("| path | engine | accuracy | F1 |")
    print("|---|---|---|---|")
    for path, engine, accuracy, f1 in rows:
        print(f"| {path} | {engine} | {accuracy:.4f} | {f1:.4f} |")
    return 0
