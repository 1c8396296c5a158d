"""How the model runs on this machine, pure: the CPU quota, torch threads,
the engine setting, and config.pbtxt `parameters`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A Deployment pins the engine (or auto's choice to one precision) for all its
# replicas with this variable, over config.pbtxt's `engine` parameter.
ENGINE_VARIABLE = "SST2_ENGINE"
# auto settings -> the precisions they choose among
AUTO = {"auto": ("fp32", "int8"), "auto-fp32": ("fp32",)}


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


def engine_setting(configured: str, environ: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """The engine to serve (SST2_ENGINE if set, else config.pbtxt's) and, for
    an auto setting, the precisions auto chooses among (else ())."""
    engine = environ.get(ENGINE_VARIABLE) or configured
    return engine, AUTO.get(engine, ())
