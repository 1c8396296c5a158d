"""The offline-trained model through the full stack (proxy -> Triton).

Trains it on first use (a few minutes, cached by content hash afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from checkout.repository import model_module
from checkpoints.cache_dir import default_cache_dir
from checkpoints.info import read_info
from modelctl.convert import calibration, ensure_engines
from tests.http import predict, request
from tests.stack import start_stack
from trainer.cache import ensure_offline_model
from trainer.data import default_train_tsv
from trainer.evaluate import eval_examples, in_process, through_service
from trainer.metrics import accuracy_f1

pytestmark = pytest.mark.integration
ENGINES = model_module("engines").ENGINES


@pytest.fixture(scope="module")
def trained_checkpoint() -> Path:
    return ensure_offline_model(default_train_tsv(), default_cache_dir())


@pytest.fixture(scope="module")
def trained_engines(trained_checkpoint: Path) -> Path:
    return ensure_engines(trained_checkpoint, default_cache_dir(), calibration())


@pytest.fixture(scope="module")
def trained_proxy(
    trained_checkpoint: Path,
    trained_engines: Path,
    tmp_path_factory: pytest.TempPathFactory,
    logs_dir: Path,
    redis_server: int,
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("trained")
    stack = start_stack(trained_checkpoint, workdir, logs_dir, redis_server,  # committed config
                        engines=trained_engines)  # fmt: skip
    yield stack.proxy.url
    stack.stop()


def test_identity_says_trained_offline_with_accuracy(
    trained_proxy: str, trained_checkpoint: Path
) -> None:
    model = request("GET", f"{trained_proxy}/model").json()["model"]
    assert model["source"] == "trained-offline" and model["standin"] is False
    assert model["accuracy"] == read_info(trained_checkpoint)["accuracy"]
    assert model["accuracy"]["heldout_accuracy"] >= 0.80
    assert model["engine"] in ENGINES  # the committed default config: auto


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


def test_served_engine_is_within_a_point_of_fp32(
    trained_proxy: str, trained_checkpoint: Path, trained_engines: Path
) -> None:
    engine = request("GET", f"{trained_proxy}/model").json()["model"]["engine"]
    _, heldout = eval_examples(None, trained_checkpoint)
    texts, labels = [e.text for e in heldout], [e.label for e in heldout]
    fp32, _ = accuracy_f1(labels, in_process(trained_checkpoint, "torch-fp32", texts))
    served, _ = accuracy_f1(labels, in_process(trained_checkpoint, engine, texts, trained_engines))
    assert served >= fp32 - 0.01, f"{engine}: {served:.4f} held-out vs torch-fp32 {fp32:.4f}"
