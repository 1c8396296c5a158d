"""The offline-trained model through the full stack (proxy -> Triton).

Trains it on first use (a few minutes, cached by content hash afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from checkpoints.cache_dir import default_cache_dir
from checkpoints.info import read_info
from tests.http import predict, request
from tests.stack import start_stack
from trainer.cache import ensure_offline_model
from trainer.data import default_train_tsv
from trainer.evaluate import eval_examples, through_service
from trainer.metrics import accuracy_f1

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained_checkpoint() -> Path:
    return ensure_offline_model(default_train_tsv(), default_cache_dir())


@pytest.fixture(scope="module")
def trained_proxy(
    trained_checkpoint: Path,
    tmp_path_factory: pytest.TempPathFactory,
    logs_dir: Path,
    redis_server: int,
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("trained")
    stack = start_stack(trained_checkpoint, workdir, logs_dir, redis_server)  # committed config
    yield stack.proxy.url
    stack.stop()


def test_identity_says_trained_offline_with_accuracy(
    trained_proxy: str, trained_checkpoint: Path
) -> None:
    model = request("GET", f"{trained_proxy}/model").json()["model"]
    assert model["source"] == "trained-offline" and model["standin"] is False
    assert model["accuracy"] == read_info(trained_checkpoint)["accuracy"]
    assert model["accuracy"]["heldout_accuracy"] >= 0.80
    assert model["precision"] == "int8"  # the committed default config


def test_heldout_accuracy_through_the_full_stack(
    trained_proxy: str, trained_checkpoint: Path
) -> None:
    _, heldout = eval_examples(None, trained_checkpoint)
    predicted = through_service(trained_proxy, [e.text for e in heldout])
    accuracy, f1 = accuracy_f1([e.label for e in heldout], predicted)
    assert accuracy >= 0.78, f"held-out accuracy {accuracy:.4f} through proxy -> Triton"
    assert f1 >= 0.78


def test_the_original_examples_come_out_right(trained_proxy: str) -> None:
    love, hate = predict(trained_proxy, ["I love you!", "I hate you!"]).json()["predictions"]
    assert love[1]["label"] == "POSITIVE" and love[1]["score"] > 0.5
    assert hate[0]["label"] == "NEGATIVE" and hate[0]["score"] > 0.5
