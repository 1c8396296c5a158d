"""Resident memory and CPU time of process trees, from /proc."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # the command name (field 2) may hold spaces: split after its ")"
    return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    found = []
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # field 4: ppid
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def tree(roots: Iterable[int]) -> Iterator[int]:
    """`roots` and all their descendants."""
    pending = list(roots)
    while pending:
        current = pending.pop()
        yield current
        pending += children(current)


def _rss_kib(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def resident_mib(*roots: int) -> float:
    """VmRSS of the process trees under `roots`, in MiB."""
    return sum(_rss_kib(pid) for pid in tree(roots)) / 1024


def cpu_seconds(*roots: int) -> float:
    """User + system CPU time used so far by the live process trees under `roots`."""
    total = 0
    for pid in tree(roots):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICKS
