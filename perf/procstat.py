"""Resident memory and CPU time of process trees (psutil)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psutil


def tree(*roots: int) -> Iterator[psutil.Process]:
    """The live processes among `roots` and all their descendants."""
    for pid in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            yield root
            yield from root.children(recursive=True)


def resident_mib(*roots: int) -> float:
    """Resident memory of the process trees under `roots`, in MiB."""
    total = 0
    for process in tree(*roots):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def _cpu(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.NoSuchProcess):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def cpu_seconds_split(root: int) -> tuple[float, float]:
    """CPU time used so far by `root` itself and by its live descendants (for
    tritonserver: the server, and its Python backend stubs)."""
    processes = list(tree(root))
    if not processes:
        return 0.0, 0.0
    return _cpu(processes[0]), sum(_cpu(p) for p in processes[1:])
