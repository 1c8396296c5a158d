"""perf_analyzer (shipped in the tritonclient 2.50 wheel): setup, run, parse.

It needs Debian's libb64-0d and libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12)
to start, even against a CPU-only server; `ensure_installed` provides both.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from checkout.paths import ROOT


def _cudart_dir() -> Path | None:
    try:
        import nvidia.cuda_runtime
    except ImportError:
        return None
    return Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"


def _has_libb64() -> bool:
    done = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False)
    return "libb64.so.0d" in done.stdout


def ensure_installed() -> None:
    """Install libb64-0d (apt, as root) and the CUDA runtime wheel when missing."""
    if not _has_libb64():
        if os.geteuid() != 0:
            raise SystemExit("perf_analyzer needs libb64-0d: sudo apt-get install libb64-0d")
        print("installing libb64-0d (apt-get)", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "libb64-0d"], check=True)
    if _cudart_dir() is None:
        print("installing nvidia-cuda-runtime-cu12 (pip)", flush=True)
        requirements = ROOT / "requirements" / "perf.txt"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-r", str(requirements)], check=True
        )


def environment() -> dict[str, str]:
    libdir = _cudart_dir()
    assert libdir is not None, "call ensure_installed() first"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libdir), env.get("LD_LIBRARY_PATH", "")) if p
    )
    return env


def write_input_data(texts: Sequence[str], path: Path) -> Path:
    """perf_analyzer's JSON input format: one batch-1 TEXT tensor per entry."""
    data = [{"TEXT": {"content": [t], "shape": [1]}} for t in texts]
    path.write_text(json.dumps({"data": data}))
    return path


@dataclass(frozen=True)
class Measurement:
    concurrency: int
    infer_per_second: float
    p50_ms: float
    p99_ms: float
    queue_ms: float
    compute_ms: float


def run(
    url: str, input_data: Path, concurrency: int, csv_path: Path, *, interval_ms: int = 5000
) -> Measurement:
    """One perf_analyzer run at a fixed concurrency (HTTP, batch-1 requests)."""
    binary = shutil.which("perf_analyzer", path=str(Path(sys.executable).parent))
    if binary is None:
        raise SystemExit("perf_analyzer not found: install tritonclient[all]==2.50.0")
    command = [
        binary, "-m", "distilbert_sst2", "-u", url, "-i", "http",
        "--input-data", str(input_data),
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(interval_ms),
        # 2 shared cores are noisy: accept windows within 50% of each other.
        "--stability-percentage", "50", "--max-trials", "10",
        "-f", str(csv_path),
    ]  # fmt: skip
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    with csv_path.open() as f:
        row = next(csv.DictReader(f))
    us = 1000.0
    return Measurement(
        concurrency=concurrency,
        infer_per_second=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) / us,
        p99_ms=float(row["p99 latency"]) / us,
        queue_ms=float(row["Server Queue"]) / us,
        compute_ms=(
            float(row["Server Compute Input"])
            + float(row["Server Compute Infer"])
            + float(row["Server Compute Output"])
        ) / us,
    )  # fmt: skip
