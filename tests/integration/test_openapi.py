"""/openapi.json holds against the real proxy (schemathesis); /docs renders in Chromium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import artifact, rendered
from tests.http import request
from tests.stack import ProxyFactory

pytestmark = pytest.mark.integration

API_KEY = "fuzz-key"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.fixture(scope="module")
def guarded_proxy(start_proxy: ProxyFactory) -> str:
    return start_proxy(api_keys=API_KEY, max_texts="64")


def test_openapi_describes_the_configured_limits_and_auth(guarded_proxy: str) -> None:
    spec = request("GET", f"{guarded_proxy}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    predict = spec["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["text"]["maxItems"] == 64
    assert body["properties"]["long_texts"]["enum"] == ["truncate", "reject", "windows"]
    assert predict["responses"]["200"]["headers"]["X-Truncated"]["example"] == "1, 3"
    assert predict["security"] == [{"bearerAuth": []}]
    assert {"400", "401", "413", "422", "429", "502", "503"} <= set(predict["responses"])


def test_schemathesis_finds_no_server_error_or_schema_violation(
    guarded_proxy: str, logs_dir: Path, tmp_path: Path
) -> None:
    """Positive and negative cases, every check; fails on any 5xx or mismatch."""
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "--no-color",
            "run",
            f"{guarded_proxy}/openapi.json",
            "--checks=all",
            "--max-examples=150",
            "--seed=20261124",
            "--generation-database=none",
            f"--header=Authorization: Bearer {API_KEY}",
            f"--report-junit-path={logs_dir / 'schemathesis-junit.xml'}",
            "--report=junit",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,  # schemathesis keeps a .schemathesis/ cache in its cwd
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout


def test_docs_page_renders_the_api_in_headless_chromium(guarded_proxy: str, tmp_path: Path) -> None:
    dom = rendered(f"{guarded_proxy}/docs", tmp_path / "profile", artifact("docs.png"))
    # Swagger UI (swagger-ui-py, served locally) rendered every operation from the spec.
    for operation in ("predict", "model", "health", "ready", "metrics"):
        assert f'id="operations-default-{operation}"' in dom, dom[-3000:]
    assert "SST-2 sentiment inference" in dom
    assert 'class="btn authorize' in dom  # API keys on: the bearer scheme is offered
    assert "errors-wrapper" not in dom  # no load or schema error shown
