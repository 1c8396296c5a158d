"""The engines and `engine: auto` (standin-tiny, converted by modelctl.convert):
every engine computes the same model, and the engine auto chooses gives a
text the same scores whatever it is batched with."""

from __future__ import annotations

from pathlib import Path

import engines
import numpy as np
import pytest
import selection

from classifier import Classifier
from trainer.data import sst2_sentences as sentences

TOLERANCE = {"fp32": 1e-5, "int8": 0.1}


def load(checkpoint: Path, engines_dir: Path, name: str) -> Classifier:
    return Classifier(checkpoint, engines.load(name, checkpoint, engines_dir, threads=2),
                      max_length=512, token_budget=512)  # fmt: skip


def test_every_engine_is_built(tiny_engines: Path) -> None:
    assert engines.available(tiny_engines) == list(engines.ENGINES)


@pytest.mark.parametrize("name", engines.ENGINES)
def test_engine_computes_the_torch_fp32_model(
    tiny_checkpoint: Path, tiny_engines: Path, name: str
) -> None:
    texts = [*sentences(40), "word " * 600]
    reference = load(tiny_checkpoint, tiny_engines, "torch-fp32").predict(texts)
    scores = load(tiny_checkpoint, tiny_engines, name).predict(texts)
    engine = engines.load(name, tiny_checkpoint, tiny_engines, threads=1)
    assert np.abs(scores - reference).max() <= TOLERANCE[engine.precision]
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def adversarial_mates(target: list[int], vocab: int) -> list[list[int]]:
    """Texts of the target's own length (so they share its packed micro-batch)
    built to move per-batch activation scales: the rarest and the most
    frequent token ids over and over, random ids, and a 512-token neighbour."""
    rng = np.random.default_rng(7)
    inner = len(target) - 2
    return [
        [101, *[vocab - 1] * inner, 102],
        [101, *[1012] * inner, 102],
        *([101, *rng.integers(999, vocab, inner).tolist(), 102] for _ in range(6)),
        [101, *rng.integers(999, vocab, 510).tolist(), 102],
    ]


def batch_drift(classifier: Classifier, texts: list[str]) -> float:
    """The largest change of a text's scores between alone and among adversarial mates."""
    vocab = classifier.tokenizer.vocab_size
    drift = 0.0
    for ids in classifier.token_ids(texts):
        alone = classifier.score_token_ids([ids])[0]
        mates = adversarial_mates(ids, vocab)
        crowded = classifier.score_token_ids([*mates[:4], ids, *mates[4:]])[4]
        drift = max(drift, float(np.abs(alone - crowded).max()))
    return drift


@pytest.fixture(scope="module")
def trials(tiny_checkpoint: Path, tiny_engines: Path) -> list[selection.Trial]:
    names = engines.available(tiny_engines)
    return selection.measure(names, lambda n: load(tiny_checkpoint, tiny_engines, n).predict)


def test_auto_chooses_a_batch_invariant_engine(
    tiny_checkpoint: Path, tiny_engines: Path, trials: list[selection.Trial]
) -> None:
    chosen = selection.best(trials, judge_agreement=False).engine  # a stand-in, as Triton does
    drift = batch_drift(load(tiny_checkpoint, tiny_engines, chosen), sentences(12, offset=500))
    assert drift <= selection.INVARIANCE, f"{chosen}: scores move by {drift:.2e} with batch-mates"


def test_every_engine_measured_invariant_is_invariant_against_adversaries(
    tiny_checkpoint: Path, tiny_engines: Path, trials: list[selection.Trial]
) -> None:
    texts = sentences(6, offset=900)
    for trial in trials:
        drift = batch_drift(load(tiny_checkpoint, tiny_engines, trial.engine), texts)
        if trial.invariant:
            assert drift <= selection.INVARIANCE, f"{trial.engine} qualified, drifts {drift:.2e}"


def test_dynamic_int8_is_measured_as_batch_dependent(trials: list[selection.Trial]) -> None:
    # What the invariance check is for: per-batch activation scales.
    by_name = {t.engine: t for t in trials}
    assert by_name["torch-int8"].batch_drift > selection.INVARIANCE
    assert not by_name["torch-int8"].qualifies


def trial(name: str, speed: float, drift: float = 0.0, diff: float = 0.0,
          agree: bool = True) -> selection.Trial:  # fmt: skip
    return selection.Trial(name, speed, drift, diff, agree)


def test_best_is_the_fastest_qualifying_engine() -> None:
    trials = [
        trial("torch-fp32", 10),
        trial("torch-int8", 40, drift=1e-2),  # batch-dependent
        trial("onnxruntime-int8", 35, diff=0.2),  # too far from fp32
        trial("openvino-int8", 30, agree=False),  # a label flipped
        trial("openvino-fp32", 20),
        trial("onnxruntime-fp32", 15),
    ]
    assert selection.best(trials).engine == "openvino-fp32"
    # a stand-in's scores all sit near 0.5: only batch invariance is judged
    assert selection.best(trials, judge_agreement=False).engine == "onnxruntime-int8"
    assert selection.best([trial("torch-int8", 40, drift=1e-2)]).engine == "torch-int8"


def test_choice_is_cached_per_machine_model_and_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trials = [trial("torch-fp32", 10), trial("openvino-fp32", 20)]
    path = tmp_path / "choice.json"
    selection.write_cached(path, trials)
    assert selection.read_cached(path) == trials
    assert selection.read_cached(tmp_path / "absent.json") is None
    key = selection.cache_key({"checkpoint": "a", "openvino-fp32": "b"}, threads=2)
    assert key != selection.cache_key({"checkpoint": "a", "openvino-fp32": "c"}, threads=2)
    assert key != selection.cache_key({"checkpoint": "a2", "openvino-fp32": "b"}, threads=2)
    assert key != selection.cache_key({"checkpoint": "a", "openvino-fp32": "b"}, threads=1)
    # capping oneDNN at AVX2 makes OpenVINO int8 several times slower on this
    # CPU while ONNX Runtime ignores the cap: the uncapped choice must not be reused
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert key != selection.cache_key({"checkpoint": "a", "openvino-fp32": "b"}, threads=2)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert key == selection.cache_key({"checkpoint": "a", "openvino-fp32": "b"}, threads=2)
    # new model code (how engines are fed, e.g. OpenVINO's padding) is measured again
    monkeypatch.setattr(selection, "code_digest", lambda: "another version")
    assert key != selection.cache_key({"checkpoint": "a", "openvino-fp32": "b"}, threads=2)


def test_the_code_digest_covers_the_model_s_python_files(tmp_path: Path) -> None:
    (tmp_path / "engines.py").write_text("SHAPE_TOKENS = 32\n")
    (tmp_path / "config.pbtxt").write_text("name: x\n")
    before = selection.code_digest(tmp_path)
    (tmp_path / "config.pbtxt").write_text("name: y\n")
    assert selection.code_digest(tmp_path) == before
    (tmp_path / "engines.py").write_text("SHAPE_TOKENS = 16\n")
    assert selection.code_digest(tmp_path) != before
    assert selection.code_digest() != selection.code_digest(tmp_path)  # the real files
