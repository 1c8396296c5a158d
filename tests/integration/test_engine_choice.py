"""`engine: auto` in a real tritonserver (standin-tiny with its converted
engines, the committed config): the engine is chosen by a measurement on this
machine, cached for the next start, named in MODEL_INFO, and its scores do not
depend on who else is in the dynamic batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from checkout.repository import copy_model_definition, model_module
from devstack.launch import start_triton
from modelctl.install import install
from tests.stack import MODEL, Triton, http_client, http_scores, text_input
from trainer.data import sst2_sentences as sentences

pytestmark = pytest.mark.integration
selection = model_module("selection")


@pytest.fixture(scope="module")
def auto_triton(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, tiny_engines: Path,
    logs_dir: Path,
) -> Iterator[tuple[Triton, Path]]:  # fmt: skip
    repository = copy_model_definition(tmp_path_factory.mktemp("auto"))  # committed config
    install(tiny_checkpoint, repository, engines=tiny_engines)
    cache = tmp_path_factory.mktemp("xdg-cache")
    server, ports = start_triton(repository, logs_dir, env={"XDG_CACHE_HOME": str(cache)})
    yield Triton(ports, repository, server), cache
    server.stop()


def model_info(triton: Triton) -> dict[str, object]:
    out = httpclient.InferRequestedOutput("MODEL_INFO")
    with http_client(triton) as client:
        result = client.infer(MODEL, [text_input(httpclient, ["x"])], outputs=[out])
    info: dict[str, object] = json.loads(result.as_numpy("MODEL_INFO")[0][0])
    return info


def cached_trials(cache: Path) -> list[object]:
    files = list((cache / "distilbert_sst2-engines").glob("*.json"))
    assert len(files) == 1, files
    trials: list[object] = selection.read_cached(files[0])
    return trials


def test_serves_the_fastest_qualifying_engine_it_measured(
    auto_triton: tuple[Triton, Path],
) -> None:
    triton, cache = auto_triton
    trials = cached_trials(cache)
    assert {t.engine for t in trials} == set(model_module("engines").ENGINES)  # type: ignore[attr-defined]
    info = model_info(triton)
    rule = selection.Rule.of(trials, standin=True)
    served = next(t for t in trials if t.engine == info["engine"])  # type: ignore[attr-defined]
    assert rule.qualifies(served), (served, rule)
    assert info["engine"] == selection.best(trials, rule).engine  # a stand-in
    assert info["precision"] == served.precision and info["engine_files"]


def test_scores_do_not_depend_on_batch_mates(auto_triton: tuple[Triton, Path]) -> None:
    triton, _ = auto_triton
    targets = sentences(8, offset=300)
    alone = np.concatenate([http_scores(triton, [t]) for t in targets])
    mates = ["zzz " * n + "!!!" * n for n in range(1, 60)] + ["qx " * 500]

    def crowded(target: str) -> np.ndarray:
        return http_scores(triton, [*mates[::2], target, *mates[1::2]])[len(mates[::2])]

    with ThreadPoolExecutor(8) as pool:  # several requests, so the batcher mixes them too
        together = np.stack(list(pool.map(crowded, targets)))
    # standin-tiny's fp32 noise is under the floor: the rule's tightest bound
    assert np.abs(together - alone).max() <= selection.DRIFT_MULTIPLE * selection.NOISE_FLOOR


def test_a_restart_reuses_the_cached_choice(
    auto_triton: tuple[Triton, Path], logs_dir: Path
) -> None:
    triton, cache = auto_triton
    (choice,) = (cache / "distilbert_sst2-engines").glob("*.json")
    trials = choice.read_text()
    fake = json.loads(trials)
    for row in fake:  # a cached measurement that favours torch-fp32 is obeyed
        row["sentences_per_second"] = 1e9 if row["engine"] == "torch-fp32" else 1.0
    choice.write_text(json.dumps(fake))
    server, ports = start_triton(triton.repository, logs_dir, env={"XDG_CACHE_HOME": str(cache)})
    try:
        assert model_info(Triton(ports, triton.repository, server))["engine"] == "torch-fp32"
    finally:
        server.stop()
        choice.write_text(trials)
