"""Download the pinned SST-2 checkpoint from the Hugging Face hub, verified.

Every file is checked against the hashes the hub records *for the pinned
commit*: the LFS sha256 for weights, the git blob sha1 for small files. The
commit id is itself a content address, so a moved branch or a tampered mirror
cannot slip different bytes in.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from checkpoints.info import write_info
from checkpoints.staging import staged_dir

log = logging.getLogger(__name__)

FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt")


@dataclass(frozen=True)
class HubModel:
    """A hub repository pinned to one commit, and the files we take from it."""

    repo_id: str
    revision: str
    files: tuple[str, ...] = FILES

    @property
    def name(self) -> str:
        return self.repo_id.split("/")[1]


SST2 = HubModel(
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
    "714eb0fa89d2f80546fda750413ed43d93601a13",
)
# The base model the published SST-2 checkpoint was fine-tuned from.
BASE = HubModel(
    "distilbert/distilbert-base-uncased",
    "12040accade4e8a0f71eabdb258fecc2e7e948be",
)


class HubUnavailable(RuntimeError):
    """The hub could not be reached or did not serve the pinned files."""


@dataclass(frozen=True)
class ExpectedHash:
    """What the hub's tree at the pinned commit says a file must hash to."""

    sha256: str | None = None  # LFS files
    git_sha1: str | None = None  # regular git blobs


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(
    directory: Path, expected: Mapping[str, ExpectedHash], files: tuple[str, ...] = FILES
) -> None:
    """Raise ValueError unless every file in `files` matches its expected hash."""
    for name in files:
        want = expected.get(name)
        if want is None:
            raise ValueError(f"the pinned revision lists no hash for {name}")
        path = directory / name
        if want.sha256 is not None:
            got = file_sha256(path)
            if got != want.sha256:
                raise ValueError(f"{name}: sha256 {got} != pinned {want.sha256}")
        elif want.git_sha1 is not None:
            got = git_blob_sha1(path.read_bytes())
            if got != want.git_sha1:
                raise ValueError(f"{name}: git sha1 {got} != pinned {want.git_sha1}")
        else:
            raise ValueError(f"the pinned revision gives {name} no usable hash")


def _pinned_hashes(model: HubModel) -> dict[str, ExpectedHash]:
    from huggingface_hub import HfApi

    info = HfApi().model_info(model.repo_id, revision=model.revision, files_metadata=True)
    hashes: dict[str, ExpectedHash] = {}
    for sibling in info.siblings or []:
        if sibling.lfs is not None:
            hashes[sibling.rfilename] = ExpectedHash(sha256=sibling.lfs.sha256)
        elif sibling.blob_id:
            hashes[sibling.rfilename] = ExpectedHash(git_sha1=sibling.blob_id)
    return hashes


def check_reachable(timeout: float = 5.0) -> None:
    """Fail fast when the hub cannot be reached (its client retries for ~25 s)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise HubUnavailable("HF_HUB_OFFLINE is set")
    endpoint = urlparse(constants.ENDPOINT)
    host, port = (
        endpoint.hostname or "",
        endpoint.port or (443 if endpoint.scheme == "https" else 80),
    )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise HubUnavailable(f"{host}:{port} is unreachable ({exc})") from None


def download(target: Path, model: HubModel = SST2) -> Path:
    """Fetch, verify and atomically place the pinned checkpoint at `target`."""
    from huggingface_hub import snapshot_download

    check_reachable()
    log.info("downloading %s@%s from the hub", model.repo_id, model.revision[:7])
    with staged_dir(target) as staging:
        try:
            snapshot_download(
                model.repo_id,
                revision=model.revision,
                allow_patterns=list(model.files),
                local_dir=staging,
            )
            expected = _pinned_hashes(model)
        except Exception as exc:  # the hub client raises many types for "offline"
            raise HubUnavailable(f"cannot download {model.repo_id}: {exc}") from exc
        verify_files(staging, expected, model.files)
        shutil.rmtree(staging / ".cache", ignore_errors=True)
        write_info(
            staging,
            name=model.name,
            source="hub",
            repo_id=model.repo_id,
            revision=model.revision,
            standin=False,
        )
    log.info("verified %d files into %s", len(model.files), target)
    return target
