"""Dockerfiles: hadolint, and the commands they run, run here (no Docker engine).

The commands are read out of the Dockerfiles themselves, with their container
paths mapped to temporary directories, so a test breaks when a Dockerfile's
command does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.paths import MODEL_REPOSITORY, ROOT

VENV_BIN = Path(sys.executable).parent
DOCKERFILES = ("Dockerfile.triton", "Dockerfile.proxy")


def run_lines(dockerfile: str) -> str:
    """All RUN instructions of `dockerfile`, continuation lines joined."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    return "\n".join(line for line in text.splitlines() if line.startswith("RUN "))


def command(dockerfile: str, pattern: str) -> str:
    found = re.search(pattern + r"[^&\n]*", run_lines(dockerfile))
    assert found, f"{dockerfile} no longer runs {pattern!r}"
    return found.group(0).strip()


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


def test_triton_image_model_download_command_in_offline_standin_mode(tmp_path: Path) -> None:
    """The build stage's `modelctl get` + backend preparation, with MODEL=standin-tiny."""
    models = tmp_path / "models"
    shutil.copytree(MODEL_REPOSITORY, models)
    get = (
        command("Dockerfile.triton", r"python -m modelctl get")
        .replace('"${MODEL}"', "standin-tiny")
        .replace("/models", str(models))
        .replace("/tmp/model-cache", str(tmp_path / "cache"))
    )
    prepare = command("Dockerfile.triton", r"python -c ").replace(
        "/opt/triton-backends", str(tmp_path / "backends")
    )
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", PYTHONPATH=str(ROOT))
    for line in (get, prepare):
        subprocess.run(["bash", "-c", line], check=True, cwd=tmp_path, env=env, timeout=600)
    checkpoint = models / "distilbert_sst2" / "1" / "checkpoint"
    assert checkpoint.is_dir() and not checkpoint.is_symlink()  # --copy: baked in
    assert (checkpoint / "config.json").is_file()
    assert (models / "distilbert_sst2" / "labels.txt").read_text().split() == [
        "NEGATIVE",
        "POSITIVE",
    ]
    assert (tmp_path / "backends" / "python" / "triton_python_backend_stub").is_file()


@pytest.mark.integration
def test_proxy_image_dependency_install_has_no_torch(tmp_path: Path) -> None:
    """The proxy image's pip install, into a fresh venv; the app imports without torch."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = command("Dockerfile.proxy", r"pip install -r").replace(
        "/src/requirements", str(ROOT / "requirements")
    )
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", PIP_QUIET="1")
    env.pop("PYTHONPATH", None)
    subprocess.run(["bash", "-c", install], check=True, env=env, timeout=600)
    probe = "import sys, cache_proxy.app; assert 'torch' not in sys.modules; print('ok')"
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert run.stdout.strip() == "ok", run.stderr
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "torch" not in freeze and "transformers" not in freeze
