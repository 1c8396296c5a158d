"""Pure steps of the Triton model (no Triton, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batching import (
    bucketed,
    pack,
    plan_micro_batches,
    requested_outputs,
    softmax,
    split_rows,
    wants_scores,
)
from identity import checkpoint_digest, fingerprint
from runtime import cpu_quota, intra_op_threads, parameters
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


def test_fingerprint_tracks_content_and_engine(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = checkpoint_digest(tmp_path)
    (tmp_path / "model_info.json").write_text('{"name": "x"}')  # provenance is not content
    assert checkpoint_digest(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    second = checkpoint_digest(tmp_path)
    assert second != first
    fp32 = fingerprint(second, {"engine": "torch-fp32", "engine_files": "torch"})
    assert fp32 != fingerprint(second, {"engine": "openvino-fp32", "engine_files": "torch"})
    assert fp32 != fingerprint(second, {"engine": "torch-fp32", "engine_files": "ab12"})
    assert len(fp32) == 16


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
