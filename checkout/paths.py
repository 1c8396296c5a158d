"""Where things are in a checkout, in one place."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = ROOT / "model_repository"
MODEL_NAME = "distilbert_sst2"  # the Triton model in it
TRITON_BACKENDS = ROOT / ".cache" / "triton-backends"  # the Python backend and its stub
RUN = ROOT / ".run"  # make up's state (Redis working directory)
RESULTS = ROOT / "perf" / "results"  # benchmark reports
SHARED_SST2_TRAIN = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
