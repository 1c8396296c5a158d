"""Model tools: MODEL= parsing, hash verification, repository install."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from checkpoints.hub import FILES, ExpectedHash, git_blob_sha1, verify_files
from modelctl import convert
from modelctl.install import install, labels_of
from modelctl.spec import ModelSpec


def test_model_spec_names_and_paths(tmp_path: Path) -> None:
    assert ModelSpec.parse("auto").name == "auto"
    assert ModelSpec.parse("standin-tiny").name == "standin-tiny"
    (tmp_path / "config.json").write_text("{}")
    spec = ModelSpec.parse(str(tmp_path))
    assert (spec.name, spec.path) == ("path", tmp_path.resolve())
    with pytest.raises(ValueError, match="neither"):
        ModelSpec.parse(str(tmp_path / "missing"))


def test_git_blob_sha1_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def _fake_download(tmp_path: Path) -> dict[str, ExpectedHash]:
    expected = {}
    for name in FILES:
        data = f"content of {name}".encode()
        (tmp_path / name).write_bytes(data)
        if name.endswith(".safetensors"):
            expected[name] = ExpectedHash(sha256=hashlib.sha256(data).hexdigest())
        else:
            expected[name] = ExpectedHash(git_sha1=git_blob_sha1(data))
    return expected


def test_verify_accepts_matching_files(tmp_path: Path) -> None:
    verify_files(tmp_path, _fake_download(tmp_path))


def test_verify_rejects_tampered_or_unlisted_files(tmp_path: Path) -> None:
    expected = _fake_download(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"model\.safetensors: sha256"):
        verify_files(tmp_path, expected)
    expected = _fake_download(tmp_path)
    (tmp_path / "vocab.txt").write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"vocab\.txt: git sha1"):
        verify_files(tmp_path, expected)
    expected = _fake_download(tmp_path)
    del expected["config.json"]
    with pytest.raises(ValueError, match=r"no hash for config\.json"):
        verify_files(tmp_path, expected)


def _checkpoint(tmp_path: Path, id2label: dict[str, str]) -> Path:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text(json.dumps({"id2label": id2label}))
    return checkpoint


def test_labels_come_from_id2label_in_id_order(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, {"1": "POSITIVE", "0": "NEGATIVE"})
    assert labels_of(checkpoint) == ["NEGATIVE", "POSITIVE"]
    with pytest.raises(ValueError, match="id2label"):
        labels_of(_checkpoint(tmp_path / "x", {"0": "ONLY"}))


def test_install_links_checkpoint_and_writes_labels(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, {"0": "NEG", "1": "POS"})
    repository = tmp_path / "repo"
    (repository / "distilbert_sst2" / "1").mkdir(parents=True)
    (repository / "distilbert_sst2" / "config.pbtxt").write_text("")
    model_dir = install(checkpoint, repository)
    assert (model_dir / "labels.txt").read_text() == "NEG\nPOS\n"
    assert (model_dir / "1" / "checkpoint").resolve() == checkpoint.resolve()
    install(checkpoint, repository, copy=True)  # replaces the link with a copy
    assert not (model_dir / "1" / "checkpoint").is_symlink()
    assert (model_dir / "1" / "checkpoint" / "config.json").is_file()


def test_install_refuses_a_non_repository(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, {"0": "NEG", "1": "POS"})
    with pytest.raises(FileNotFoundError, match=r"config\.pbtxt"):
        install(checkpoint, tmp_path / "nothing")


@pytest.mark.parametrize(
    "command",
    [
        ["modelctl", "get", "hub", "--repository", "model_repository"],
        ["trainer", "train", "--from-hub"],
    ],
)
def test_hub_commands_fail_fast_and_clearly_offline(command: list[str], tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", MODEL_CACHE=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", *command], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "HF_HUB_OFFLINE is set" in done.stderr


def test_engines_built_without_calibration_data_are_rebuilt_once_it_is_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first `make up` without SST-2 train gets no openvino-int8; the cached
    build must not keep it out once the data is beside the checkout."""
    builds: list[object] = []

    def fake_convert(checkpoint: Path, out: Path, calibration: list[str] | None) -> list[str]:
        builds.append(calibration)
        return ["onnxruntime-fp32", *([convert.CALIBRATED] if calibration else [])]

    monkeypatch.setattr(convert, "convert", fake_convert)
    monkeypatch.setattr(convert, "converter_key", lambda checkpoint, code: "key")
    for data in (None, None, ["a sentence"], ["a sentence"], None):
        convert.ensure_engines(tmp_path / "checkpoint", tmp_path, data, code=tmp_path)
    assert builds == [None, ["a sentence"]]
