"""MLServer (Seldon) with its Hugging Face runtime: the peer server `make bench`
measures, set up as its documentation says for a text classifier.

Its own virtual environment (.cache/peers/mlserver, about 3.6 GB with the
TensorFlow the runtime requires), built once from mlserver-requirements.txt;
it serves the same checkpoint files through `mlserver start` with adaptive
batching. Clients call it with the Open Inference (v2) protocol
(perf/k6/lib.js, PROTOCOL=v2).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from checkout.paths import ROOT
from devstack.process import free_port

HERE = Path(__file__).resolve().parent
VENV = ROOT / ".cache" / "peers" / "mlserver"
MODEL = "sst2"
# Adaptive batching (MLServer's name for dynamic batching): up to 32 requests
# or 5 ms (ours, Triton: up to 64 rows, run as soon as the instance is free).
BATCHING = {"max_batch_size": 32, "max_batch_time": 0.005}


def ensure_venv() -> Path:
    """The peer's venv, built on first use (a few minutes)."""
    marker = VENV / ".installed"
    requirements = HERE / "mlserver-requirements.txt"
    constraints = HERE / "mlserver-constraints.txt"
    if marker.is_file() and marker.read_text() == requirements.read_text():
        return VENV
    print(f"building MLServer's venv in {VENV} (first time: a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]  # fmt: skip
    subprocess.run([*pip, "-r", str(requirements), "-c", str(constraints)], check=True)
    marker.write_text(requirements.read_text())
    return VENV


def write_settings(checkpoint: Path, http_port: int) -> Path:
    """settings.json + <model>/model-settings.json in a new directory."""
    folder = Path(tempfile.mkdtemp(prefix="mlserver-"))
    server = {"http_port": http_port, "grpc_port": free_port(), "metrics_port": free_port()}
    (folder / "settings.json").write_text(json.dumps(server))
    (folder / MODEL).mkdir()
    model = {
        "name": MODEL,
        "implementation": "mlserver_huggingface.HuggingFaceRuntime",
        **BATCHING,
        "parameters": {"uri": str(checkpoint), "extra": {"task": "text-classification"}},
    }
    (folder / MODEL / "model-settings.json").write_text(json.dumps(model, indent=1))
    return folder


def command(folder: Path) -> list[str]:
    return [str(VENV / "bin" / "mlserver"), "start", str(folder)]
