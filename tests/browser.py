"""Headless Chromium for the page tests, and where test artefacts go."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from checkout.paths import ROOT

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / ".artifacts"))


def artifact(name: str) -> Path:
    """A fresh path under ARTIFACTS (screenshots, figures) for `name`."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    return path


def chromium(profile: Path, budget_ms: int = 10000) -> list[str]:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is missing: `make test-system-deps` installs Debian's chromium"
    return [
        path,
        "--headless",
        "--no-sandbox",  # tests run as root in CI containers
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",  # let the page fetch and render its data
    ]


def rendered(url: str, profile: Path, screenshot: Path, height: int = 1800) -> str:
    """The page's DOM after its scripts ran; a screenshot of it saved to `screenshot`."""
    browser = chromium(profile)
    dom = subprocess.run(
        [*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    subprocess.run(
        [*browser, f"--screenshot={screenshot}", f"--window-size=1200,{height}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one
    return dom
