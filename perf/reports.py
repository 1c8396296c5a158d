"""What the perf tools' reports share: the commit measured, and how a
report is written (perf/results/<run>/results.json and report.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def commit() -> str:
    """The short commit of HEAD: take it at the start, as what is measured."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def write(out: Path, results: dict[str, Any], report: str) -> None:
    """`results` as results.json and `report` as report.md in `out`, and the report printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(report)
    print(report)
