"""Dockerfiles, statically: hadolint, non-root final stages, exec-form entry
points, no torch in the proxy's requirements. The images themselves are built
and run in test_images.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from checkout.paths import ROOT

VENV_BIN = Path(sys.executable).parent
DOCKERFILES = ("Dockerfile.triton", "Dockerfile.proxy")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile: str) -> None:
    run = subprocess.run(
        [str(VENV_BIN / "hadolint"), str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_final_stages_run_as_non_root_with_exec_form_entrypoints() -> None:
    for dockerfile in DOCKERFILES:
        final = (ROOT / dockerfile).read_text().rsplit("\nFROM ", 1)[1]
        assert re.search(r"^USER 10001$", final, re.M), dockerfile
        assert re.search(r'^ENTRYPOINT \["', final, re.M), dockerfile
    proxy_requirements = (ROOT / "requirements" / "proxy.txt").read_text().lower()
    assert not re.search(r"^(torch|transformers)\b", proxy_requirements, re.M)
