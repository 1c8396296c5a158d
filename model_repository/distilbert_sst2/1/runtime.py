"""How the model runs on this machine, pure: the CPU quota, torch threads,
and config.pbtxt `parameters`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """CPUs this process may use: the cgroup v2 limit if set, else the core count."""
    cores = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return min(cores, int(quota) / int(period))


def intra_op_threads(setting: str, instances: int, quota: float) -> int:
    """Torch threads per model instance: `auto` splits the CPU quota evenly."""
    if setting != "auto":
        threads = int(setting)
        if threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1 or 'auto', got {setting!r}")
        return threads
    return max(1, int(quota // max(1, instances)))


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """config.pbtxt `parameters` as a flat str -> str mapping."""
    return {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}
