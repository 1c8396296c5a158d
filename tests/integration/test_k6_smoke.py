"""A few seconds of the original k6 profile against the real proxy: zero failures.

Performance numbers belong to `make bench`; this only proves the scenario runs
end to end and that nothing fails under it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from perf.compare.k6run import K6, SCRIPTS

pytestmark = pytest.mark.integration


def test_original_profile_smoke_has_no_failed_requests(proxy_url: str, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    env = dict(
        os.environ,
        BASE_URL=proxy_url,
        RAMP="1s",
        HOLD="4s",
        DOWN="1s",
        P99_MS="600000",  # not a latency test
        K6_NO_USAGE_REPORT="true",
    )
    run = subprocess.run(
        [str(K6), "run", "--quiet", f"--summary-export={summary}", "original.js"],
        cwd=SCRIPTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["http_reqs"]["count"] > 20
    assert metrics["http_req_failed"]["value"] == 0
    assert metrics["checks"]["fails"] == 0
    assert metrics["cache_hit"]["value"] > 0.5  # the fixed sentences come from the cache
