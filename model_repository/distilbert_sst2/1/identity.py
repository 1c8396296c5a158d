"""Who the served model is: the fingerprint of its answers and the
MODEL_INFO it reports (typed here, parsed by cache_proxy.tracker.ModelIdentity).

The fingerprint names the answers, not the machinery. It covers everything
that can change a score: the checkpoint (weights, tokenizer, config), this
model's code, the versions of the libraries that tokenize and compute, the
truncation length, and the numeric class. Every fp32 engine computes the same
function to rounding noise (`engine: auto` serves one only if it agrees with
torch fp32 within selection.SAME_MULTIPLE of that noise), so they share the
class "fp32"; an int8 engine changes the numbers by its own quantization, so
it is a class of its own (its name and files). Nothing about the machine
enters it: every replica of one image computes the same fingerprint, whichever
fp32 engine its CPU made fastest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

# The distributions whose versions can change a score: tokenizing, and every engine's kernels.
SCORING_LIBRARIES = ("numpy", "tokenizers", "transformers", "torch", "onnxruntime", "openvino")


def checkpoint_digest(checkpoint: Path, exclude: Sequence[str] = ("model_info.json",)) -> str:
    """sha256 over every file of a directory tree (relative path and content),
    but `exclude` and top-level dot files: a checkpoint (model_info.json is provenance,
    not content) or a converted engine's files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        rel = path.relative_to(checkpoint).as_posix()
        if rel in exclude or rel.startswith("."):
            continue
        digest.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def code_digest(directory: Path = Path(__file__).parent) -> str:
    """sha256 over the model's Python files (name and content): the code that
    tokenizes, feeds and runs the engines."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def library_versions(names: Sequence[str] = SCORING_LIBRARIES) -> dict[str, str | None]:
    """Installed version of each distribution (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def numerics(engine: str, engine_files: str) -> str:
    """The class of scores an engine computes: "fp32" for every fp32 engine,
    else the engine and its files (an int8 engine's own quantization)."""
    return "fp32" if engine.endswith("-fp32") else f"{engine}:{engine_files}"


def fingerprint(content_digest: str, scoring: Mapping[str, Any]) -> str:
    """Identity of the answers: the checkpoint's content plus `scoring`
    (numerics, code, libraries, max_sequence_length)."""
    blob = json.dumps({"content": content_digest, **scoring}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def release(content_digest: str, scoring: Mapping[str, Any]) -> str:
    """Identity of the model apart from its numerics: the fingerprints of one
    release differ only in how precisely they compute the same function (a
    fleet may serve fp32 and int8 side by side); a new release replaces the
    old one (a rollout)."""
    return fingerprint(content_digest, {k: v for k, v in scoring.items() if k != "numerics"})


def scoring(
    serving: Mapping[str, Any], code: str, libraries: Mapping[str, str | None]
) -> dict[str, Any]:
    """What the fingerprint covers besides the checkpoint, from `serving`
    (engine, engine_files, max_sequence_length)."""
    return {
        "numerics": numerics(serving["engine"], serving["engine_files"]),
        "max_sequence_length": serving["max_sequence_length"],
        "code": code,
        "libraries": dict(libraries),
    }


# A request parameter: the releases its caller retired (comma-separated).
# The caller would refuse their answers (a rolling update: cache_proxy.tracker),
# so a replica serving one of them declines the request before any forward
# pass, with an error naming DECLINED, and the caller asks again elsewhere.
RETIRED_PARAMETER = "retired_releases"
DECLINED = "release retired by the caller"


def retired_by_caller(parameters: str, release: str) -> bool:
    """Triton's JSON of a request's parameters names `release` as retired."""
    try:
        value = json.loads(parameters or "{}").get(RETIRED_PARAMETER, "")
    except (ValueError, AttributeError):
        return False
    return isinstance(value, str) and release in value.split(",")


@dataclass(frozen=True)
class ModelInfo:
    """The MODEL_INFO JSON: provenance (model_info.json written by modelctl),
    labels, the fingerprint and what it covers (numerics, code, libraries,
    truncation), and the machinery that does not change it (engine, its files,
    forward path)."""

    name: str
    source: str
    revision: str | None
    standin: bool
    labels: list[str]
    fingerprint: str
    release: str
    numerics: str
    code: str
    libraries: dict[str, str | None]
    precision: str
    engine: str
    engine_files: str
    max_sequence_length: int
    forward: str
    extra: dict[str, Any] = field(default_factory=dict)  # warning, accuracy when known

    def to_json(self) -> bytes:
        fields = asdict(self)
        return json.dumps({**fields.pop("extra"), **fields}, sort_keys=True).encode()


PROVENANCE_EXTRAS = ("warning", "accuracy")


def read_provenance(checkpoint: Path) -> dict[str, Any]:
    """model_info.json written by modelctl ({} for a bare checkpoint)."""
    info_file = checkpoint / "model_info.json"
    provenance: dict[str, Any] = json.loads(info_file.read_text()) if info_file.is_file() else {}
    return provenance


def describe(
    checkpoint: Path,
    labels: Sequence[str],
    serving: dict[str, Any],
    content_digest: str | None = None,
    code: str | None = None,
) -> ModelInfo:
    """The identity of `checkpoint` served with `serving` (precision, engine,
    engine_files, max_sequence_length, forward) by the model code here
    (`content_digest`, `code`: checkpoint_digest(checkpoint), code_digest(), if
    already known)."""
    provenance = read_provenance(checkpoint)
    covered = scoring(serving, code or code_digest(), library_versions())
    content = content_digest or checkpoint_digest(checkpoint)
    return ModelInfo(
        name=provenance.get("name", checkpoint.resolve().name),
        source=provenance.get("source", "path"),
        revision=provenance.get("revision"),
        standin=bool(provenance.get("standin", False)),
        labels=list(labels),
        fingerprint=fingerprint(content, covered),
        release=release(content, covered),
        numerics=covered["numerics"],
        code=covered["code"],
        libraries=covered["libraries"],
        precision=serving["precision"],
        engine=serving["engine"],
        engine_files=serving["engine_files"],
        max_sequence_length=serving["max_sequence_length"],
        forward=serving["forward"],
        extra={k: provenance[k] for k in PROVENANCE_EXTRAS if k in provenance},
    )
