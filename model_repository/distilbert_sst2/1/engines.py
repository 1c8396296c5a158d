"""The inference engines that run the packed forward (no Triton).

Every engine takes a packed micro-batch (batching.Packed: texts end to end,
no padding) and returns logits [B, num_labels]:

    torch-fp32, torch-int8            packed_forward.py in torch (int8: torch.ao
                                      dynamic quantization of the Linear layers)
    onnxruntime-fp32, onnxruntime-int8  the same forward exported to ONNX
                                      (int8: ONNX Runtime dynamic quantization)
    openvino-fp32, openvino-int8      the ONNX graph in OpenVINO (int8: NNCF
                                      static quantization, calibrated on SST-2)

The non-torch engines are files that `make model` builds beside the
checkpoint (modelctl/convert.py); an engine whose files are missing is not offered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from shapes import bucketed

from batching import Packed
from identity import checkpoint_digest

ENGINES = (
    "torch-fp32",
    "torch-int8",
    "onnxruntime-fp32",
    "onnxruntime-int8",
    "openvino-fp32",
    "openvino-int8",
)
# Where each converted engine's graph lives, relative to the engines directory.
GRAPH_FILES = {
    "onnxruntime-fp32": "onnx-fp32/model.onnx",
    "onnxruntime-int8": "onnx-int8/model.onnx",
    "openvino-fp32": "openvino-fp32/model.xml",
    "openvino-int8": "openvino-int8/model.xml",
}
TORCH_FORWARD = "torch"
# OpenVINO's inputs are padded to multiples of these: it prepares each new
# shape anew. Fewer tokens of padding win at small batches, more shapes cost
# preparation (make bench-triton measures 8, 32 and 64 against 16 on the CPU
# at hand: perf/results/20261202T093153Z-triton/report.md).
SHAPE_TOKENS, SHAPE_TEXTS = 16, 8
INPUT_NAMES = ("token_ids", "positions", "segments", "starts")

Logits = Callable[[Packed], NDArray[np.float32]]


@dataclass(frozen=True)
class Engine:
    name: str
    logits: Logits
    digest: str  # of the files it runs (torch engines: the packed forward's name)
    # Pads its inputs to SHAPE_TOKENS x SHAPE_TEXTS and prepares each new shape
    # on its first call (OpenVINO): worth running every shape once at load.
    prepares_shapes: bool = False

    @property
    def precision(self) -> str:
        return self.name.rsplit("-", 1)[1]


def feeds(packed: Packed) -> dict[str, NDArray[np.int64]]:
    """The exported graph's inputs for one packed micro-batch."""
    return dict(zip(INPUT_NAMES, (packed.token_ids, packed.positions, packed.segments,
                                  packed.starts), strict=True))  # fmt: skip


def available(engines_dir: Path | None) -> list[str]:
    """The engines that can run here: torch always, the others when built."""
    return [
        name
        for name in ENGINES
        if name not in GRAPH_FILES
        or (engines_dir is not None and (engines_dir / GRAPH_FILES[name]).is_file())
    ]


@functools.cache
def files_digest(directory: Path) -> str:
    """A converted engine's files digested (identity.checkpoint_digest), once per
    process (auto's cache key, then the chosen engine's identity)."""
    return checkpoint_digest(directory, exclude=())[:16]


def digest_of(name: str, engines_dir: Path | None) -> str:
    """What identifies engine `name`'s computation: its converted files, or for
    torch the packed forward's name (the checkpoint is digested separately)."""
    if name.startswith("torch-"):
        return TORCH_FORWARD
    assert engines_dir is not None
    return files_digest((engines_dir / GRAPH_FILES[name]).parent)


def load(name: str, checkpoint: Path, engines_dir: Path | None, threads: int) -> Engine:
    """Load engine `name` with `threads` intra-op threads."""
    if name not in ENGINES:
        raise ValueError(
            f"engine must be 'auto', 'auto-fp32' or one of {', '.join(ENGINES)}, got {name!r}"
        )
    if name.startswith("torch-"):
        return _torch(name, checkpoint, threads)
    if name not in available(engines_dir):
        raise FileNotFoundError(
            f"engine {name} is not built: no {GRAPH_FILES[name]} under {engines_dir} "
            "(run `make model`, which converts the checkpoint)"
        )
    assert engines_dir is not None
    graph = engines_dir / GRAPH_FILES[name]
    digest = digest_of(name, engines_dir)
    if name.startswith("onnxruntime-"):
        return Engine(name, _onnxruntime(graph, threads), digest)
    return Engine(name, _openvino(graph, threads), digest, prepares_shapes=True)


def _torch(name: str, checkpoint: Path, threads: int) -> Engine:
    import torch
    from transformers import AutoModelForSequenceClassification

    import packed_forward

    torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, local_files_only=True
    ).eval()
    model = packed_forward.prepare(model)
    if name == "torch-int8":
        model = packed_forward.quantize_dynamic(model)

    def logits(packed: Packed) -> NDArray[np.float32]:
        with torch.inference_mode():
            out: NDArray[np.float32] = packed_forward.logits(model, packed).float().numpy()
        return out

    return Engine(name, logits, TORCH_FORWARD)


def _onnxruntime(graph: Path, threads: int) -> Logits:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def logits(packed: Packed) -> NDArray[np.float32]:
        out: NDArray[np.float32] = session.run(None, feeds(packed))[0]
        return out

    return logits


def _openvino(graph: Path, threads: int) -> Logits:
    import openvino as ov

    core = ov.Core()
    # f32 keeps fp32 exact (on AMX CPUs OpenVINO would otherwise compute in
    # bf16); one stream with every thread serves one micro-batch at a time.
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": "f32",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": threads,
    }
    compiled = core.compile_model(str(graph), "CPU", config)
    request = compiled.create_infer_request()

    def logits(packed: Packed) -> NDArray[np.float32]:
        # OpenVINO prepares each new input shape anew: pad to few shapes.
        padded = bucketed(packed, SHAPE_TOKENS, SHAPE_TEXTS)
        out: NDArray[np.float32] = request.infer(feeds(padded))[0][: packed.starts.size].copy()
        return out

    return logits
