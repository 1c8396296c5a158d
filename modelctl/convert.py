"""Build-time conversion of a checkpoint into the non-torch engines.

    checkpoint --torch.onnx.export--> onnx-fp32/model.onnx  (the packed forward)
               --quantize_dynamic---> onnx-int8/model.onnx  (ONNX Runtime)
               --openvino.convert---> openvino-fp32/model.xml
               --nncf.quantize------> openvino-int8/model.xml (calibrated on SST-2 train)

The result is cached per checkpoint and converter (its key covers the
checkpoint's files, this file and the model code it exports), and installed
beside the checkpoint as `1/engines`. Conversion never runs in the request path.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from checkout.paths import MODEL_NAME, MODEL_REPOSITORY

log = logging.getLogger(__name__)

CALIBRATION_SENTENCES = 300
OPSET = 17
MANIFEST = "manifest.json"
CALIBRATED = "openvino-int8"  # the engine built only with calibration data
CODE = MODEL_REPOSITORY / MODEL_NAME / "1"  # the model code that exports and serves


def model_module(name: str) -> Any:
    """A module of the Triton model's code (from the directory ensure_engines
    was given), imported as the Python backend does."""
    return importlib.import_module(name)


def calibration() -> list[str] | None:
    """SST-2 train sentences for NNCF, when the data is here."""
    from trainer.data import default_train_tsv, sst2_sentences

    if not default_train_tsv().is_file():
        return None
    return sst2_sentences(CALIBRATION_SENTENCES)


def converter_key(checkpoint: Path, code: Path) -> str:
    """Changes when the checkpoint, this converter or the exported code change."""
    digest = hashlib.sha256(model_module("identity").checkpoint_digest(checkpoint).encode())
    for path in (Path(__file__), *(code / n for n in
                 ("packed_forward.py", "batching.py", "engines.py"))):  # fmt: skip
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_engines(
    checkpoint: Path, cache: Path, calibration: Sequence[str] | None, code: Path = CODE
) -> Path:
    """The converted engines of `checkpoint`, built once and cached; `code` is
    the model code (a repository's `distilbert_sst2/1`) that exports and serves."""
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))
    target = cache / "engines" / converter_key(checkpoint, code)
    if (target / MANIFEST).is_file() and (calibration is None or CALIBRATED in built_in(target)):
        return target  # built before (a build without the data is redone once it is here)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    built = convert(checkpoint, staging, calibration)
    (staging / MANIFEST).write_text(json.dumps({"checkpoint": str(checkpoint), "built": built}))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def built_in(target: Path) -> list[str]:
    """The engines a cached build holds (its manifest's list)."""
    built: list[str] = json.loads((target / MANIFEST).read_text())["built"]
    return built


def convert(checkpoint: Path, out: Path, calibration: Sequence[str] | None) -> list[str]:
    """Write every engine that can be built; returns their names."""
    engines = model_module("engines")
    started = time.monotonic()
    onnx_fp32 = out / engines.GRAPH_FILES["onnxruntime-fp32"]
    export_onnx(checkpoint, onnx_fp32)
    log.info("exported ONNX (%.0f s)", time.monotonic() - started)
    quantize_onnx(onnx_fp32, out / engines.GRAPH_FILES["onnxruntime-int8"])
    log.info("quantized ONNX to int8 (%.0f s)", time.monotonic() - started)
    openvino_fp32 = out / engines.GRAPH_FILES["openvino-fp32"]
    to_openvino(onnx_fp32, openvino_fp32)
    built = ["onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32"]
    if calibration:
        tokenizer = _tokenizer(checkpoint)
        quantize_openvino(openvino_fp32, out / engines.GRAPH_FILES[CALIBRATED],
                          tokenizer, calibration)  # fmt: skip
        built.append(CALIBRATED)
        log.info("calibrated OpenVINO int8 on %d sentences (%.0f s)",
                 len(calibration), time.monotonic() - started)  # fmt: skip
    else:
        log.warning("no SST-2 train data: openvino-int8 (calibrated on it) is not built")
    return built


def _tokenizer(checkpoint: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)


def export_onnx(checkpoint: Path, path: Path) -> None:
    """The packed, fused-qkv forward (packed_forward.logits) as an ONNX graph
    with a dynamic number of tokens and texts."""
    import torch
    from transformers import AutoModelForSequenceClassification

    packed_forward = model_module("packed_forward")
    batching = model_module("batching")
    engines = model_module("engines")
    model = (
        packed_forward.prepare(
            AutoModelForSequenceClassification.from_pretrained(checkpoint, local_files_only=True)
        )
        .eval()
        .requires_grad_(False)
    )

    class Packed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # its weights become the graph's initializers

        def forward(self, token_ids: Any, positions: Any, segments: Any, starts: Any) -> Any:
            packed = batching.Packed(token_ids, positions, segments, starts)
            return packed_forward.logits(self.model, packed)

    sample = batching.pack([[101, 2023, 2003, 102], [101, 2307, 102]])
    inputs = tuple(torch.from_numpy(a) for a in engines.feeds(sample).values())
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(), warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) is deprecated; the dynamo one
        # needs onnxscript, and this one's graph matches torch to 1e-7.
        warnings.simplefilter("ignore", DeprecationWarning)  # its own internals' too
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # type: ignore[attr-defined]
        torch.onnx.export(
            Packed(), inputs, str(path), dynamo=False, opset_version=OPSET,
            input_names=list(engines.INPUT_NAMES), output_names=["logits"],
            dynamic_axes={"token_ids": {0: "tokens"}, "positions": {0: "tokens"},
                          "segments": {0: "tokens"}, "starts": {0: "texts"},
                          "logits": {0: "texts"}},
        )  # fmt: skip


def quantize_onnx(source: Path, path: Path) -> None:
    """ONNX Runtime dynamic int8 (QInt8 weights; reduce_range for CPUs without VNNI)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        source, path, weight_type=QuantType.QInt8, reduce_range=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )  # fmt: skip


def to_openvino(source: Path, path: Path) -> None:
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(source), path, compress_to_fp16=False)


def quantize_openvino(source: Path, path: Path, tokenizer: Any, texts: Sequence[str]) -> None:
    """NNCF static int8 (transformer preset: SmoothQuant) calibrated on `texts`
    in packed micro-batches of 8."""
    import nncf
    import openvino as ov

    batching = model_module("batching")
    engines = model_module("engines")
    ids = tokenizer(list(texts), truncation=True, max_length=512)["input_ids"]
    items = [engines.feeds(batching.pack(ids[i : i + 8])) for i in range(0, len(ids), 8)]
    quantized = nncf.quantize(
        ov.Core().read_model(source), nncf.Dataset(items),
        model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items),
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, path, compress_to_fp16=False)
