"""Resident memory of a process tree (tritonserver plus its Python stubs)."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def _children(pid: int) -> list[int]:
    found = []
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 of stat: parent pid
            found.append(int(stat.parent.name))
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def resident_mib(pid: int) -> float:
    """VmRSS of `pid` and all its descendants, in MiB."""
    pending, total = [pid], 0
    while pending:
        current = pending.pop()
        total += _rss_kib(current)
        pending += _children(current)
    return total / 1024
