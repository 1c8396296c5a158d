"""Pure steps of the Triton model (no Triton, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from outputs import requested_outputs, wants_scores
from shapes import bucketed

import identity
from batching import pack, plan_micro_batches, softmax, split_rows
from identity import (
    checkpoint_digest,
    code_digest,
    fingerprint,
    library_versions,
    release,
    retired_by_caller,
    scoring,
)
from runtime import cpu_quota, engine_setting, intra_op_threads, parameters
from tokens import decode_texts


def test_decode_texts_utf8_rows() -> None:
    array = np.array([[b"I love you!"], ["é🙂".encode()], [b""]], dtype=np.object_)
    assert decode_texts(array) == ["I love you!", "é🙂", ""]


def test_decode_texts_rejects_bad_utf8_and_shape() -> None:
    with pytest.raises(ValueError, match="row 1 is not valid UTF-8"):
        decode_texts(np.array([[b"ok"], [b"\xff\xfe"]], dtype=np.object_))
    with pytest.raises(ValueError, match=r"shape \[N, 1\]"):
        decode_texts(np.array([b"a", b"b"], dtype=np.object_))


def test_plan_sorts_by_length_and_respects_budget() -> None:
    lengths = [50, 3, 7, 3, 500, 8, 12]
    plan = plan_micro_batches(lengths, token_budget=40)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    for batch in plan:
        assert len(batch) == 1 or sum(lengths[i] for i in batch) <= 40
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)
    # the short texts share one pass; each long text gets its own
    assert plan == [[1, 3, 2, 5, 6], [0], [4]]


def test_plan_empty() -> None:
    assert plan_micro_batches([], 100) == []


def test_pack_lays_texts_end_to_end() -> None:
    packed = pack([[101, 7, 102], [101, 102], [101, 8, 9, 102]])
    assert packed.token_ids.tolist() == [101, 7, 102, 101, 102, 101, 8, 9, 102]
    assert packed.positions.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert packed.segments.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert packed.starts.tolist() == [0, 3, 5]
    with pytest.raises(ValueError, match="at least one token"):
        pack([[101], []])


def test_softmax_rows_sum_to_one() -> None:
    probs = softmax(np.array([[1000.0, -1000.0], [0.0, 0.0], [-2.0, 3.0]]))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert probs[1].tolist() == [0.5, 0.5]


def test_split_rows_per_request() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    parts = split_rows(rows, [2, 0, 3, 1])
    assert [p.shape[0] for p in parts] == [2, 0, 3, 1]
    assert parts[3].tolist() == [[10.0, 11.0]]


def test_threads_split_the_quota() -> None:
    assert intra_op_threads("auto", instances=1, quota=2.0) == 2
    assert intra_op_threads("auto", instances=2, quota=2.0) == 1
    assert intra_op_threads("auto", instances=4, quota=2.0) == 1
    assert intra_op_threads("3", instances=1, quota=2.0) == 3
    with pytest.raises(ValueError, match=">= 1"):
        intra_op_threads("0", instances=1, quota=2.0)


def test_cpu_quota_reads_cgroup_limit(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == pytest.approx(min(1.5, cpu_quota(tmp_path / "none")))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) == cpu_quota(tmp_path / "none")


def test_checkpoint_digest_tracks_content_not_provenance(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = checkpoint_digest(tmp_path)
    (tmp_path / "model_info.json").write_text('{"name": "x"}')  # provenance is not content
    assert checkpoint_digest(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert checkpoint_digest(tmp_path) != first


def serving(engine: str, files: str = "torch", max_length: int = 512) -> dict[str, object]:
    return {"engine": engine, "engine_files": files, "max_sequence_length": max_length}


LIBRARIES: dict[str, str] = {"torch": "2.13.0", "tokenizers": "0.22.1"}


def test_fp32_engines_share_one_fingerprint_and_int8_engines_have_their_own() -> None:
    def of(engine: str, files: str = "torch") -> str:
        return fingerprint("weights", scoring(serving(engine, files), "code", LIBRARIES))

    fp32 = of("torch-fp32")
    assert of("onnxruntime-fp32", "ab12") == of("openvino-fp32", "cd34") == fp32
    int8 = {of("openvino-int8", "ef56"), of("openvino-int8", "0123"), of("torch-int8")}
    assert len(int8) == 3 and fp32 not in int8
    assert len(fp32) == 16
    # one release: fp32 and int8 of the same model differ only in numerics
    fp32_release = release("weights", scoring(serving("torch-fp32"), "code", LIBRARIES))
    assert release("weights", scoring(serving("openvino-int8", "ef56"), "code", LIBRARIES)) == (
        fp32_release
    )
    assert release("weights2", scoring(serving("torch-fp32"), "code", LIBRARIES)) != fp32_release


def test_the_fingerprint_covers_weights_code_libraries_and_truncation() -> None:
    def of(
        weights: str = "w",
        code: str = "c",
        libraries: dict[str, str] = LIBRARIES,
        length: int = 512,
    ) -> str:
        return fingerprint(
            weights, scoring(serving("torch-fp32", max_length=length), code, libraries)
        )

    base = of()
    assert of() == base  # deterministic: every replica of one image agrees
    assert of(weights="w2") != base
    assert of(code="c2") != base
    assert of(libraries={**LIBRARIES, "tokenizers": "0.22.2"}) != base
    assert of(length=256) != base


def test_a_change_to_tokens_py_changes_the_fingerprint(tmp_path: Path) -> None:
    for path in Path(identity.__file__).parent.glob("*.py"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert code_digest(tmp_path) == code_digest()  # the copy is the served code

    def served_by(code: Path) -> str:
        return fingerprint("w", scoring(serving("torch-fp32"), code_digest(code), LIBRARIES))

    before = served_by(tmp_path)
    tokens = tmp_path / "tokens.py"
    tokens.write_text(tokens.read_text() + "\n# a change that may change tokenization\n")
    assert served_by(tmp_path) != before


def test_library_versions_are_the_installed_ones() -> None:
    versions = library_versions(("numpy", "no-such-distribution"))
    assert versions == {"numpy": np.__version__, "no-such-distribution": None}


def test_the_engine_setting_comes_from_the_environment_first() -> None:
    assert engine_setting("auto", {}) == ("auto", ("fp32", "int8"))
    assert engine_setting("auto", {"SST2_ENGINE": "auto-fp32"}) == ("auto-fp32", ("fp32",))
    assert engine_setting("auto", {"SST2_ENGINE": "openvino-int8"}) == ("openvino-int8", ())
    assert engine_setting("torch-fp32", {"SST2_ENGINE": ""}) == ("torch-fp32", ())


def test_parameters_flatten() -> None:
    config = {"parameters": {"engine": {"string_value": "auto"}}}
    assert parameters(config) == {"engine": "auto"}


def test_model_info_alone_needs_no_forward_pass() -> None:
    assert requested_outputs([]) == {"PROBABILITIES"}  # MODEL_INFO only when asked for
    assert requested_outputs(["MODEL_INFO"]) == {"MODEL_INFO"}
    assert not wants_scores(requested_outputs(["MODEL_INFO"]))
    assert wants_scores(requested_outputs(["MODEL_INFO", "PROBABILITIES"]))


def test_bucketed_pads_to_few_shapes_without_touching_real_texts() -> None:
    packed = pack([[101, 7, 102], [101, 8, 9, 102]])
    padded = bucketed(packed, tokens=32, texts=8)
    assert padded.token_ids.size == 32 and padded.starts.size == 8
    assert (padded.token_ids[:7] == packed.token_ids).all()
    assert (padded.starts[:2] == packed.starts).all()
    # the padding is one segment of its own, so attention keeps it apart
    assert set(padded.segments[7:]) == {2} and padded.positions[7] == 0
    assert bucketed(padded, tokens=32, texts=8) is padded


def test_a_request_naming_the_release_retired_is_declined() -> None:
    """Triton hands the model a request's parameters as JSON; the proxy names
    the releases it retired, comma-separated (cache_proxy.backend)."""
    assert retired_by_caller('{"retired_releases": "r0,r1"}', "r1")
    assert not retired_by_caller('{"retired_releases": "r0,r12"}', "r1")  # whole names
    assert not retired_by_caller('{"retired_releases": ""}', "r1")
    for raw in ("", "{}", "not json", "[1]", '{"retired_releases": 3}'):
        assert not retired_by_caller(raw, "r1"), raw
