"""The README documents every setting, error type and metric the code has."""

from __future__ import annotations

import re
import subprocess

from cache_proxy.errors import markdown_table as errors_table
from cache_proxy.metrics import Metrics
from cache_proxy.settings import markdown_table
from checkout.paths import ROOT

README = (ROOT / "README.md").read_text()


def test_settings_table_is_generated_from_the_settings_class() -> None:
    found = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", README, re.S)
    assert found, "README lacks the settings markers"
    assert found.group(1).strip() == markdown_table().strip(), (
        "README settings table is stale: paste `python -m cache_proxy.settings` between the markers"
    )


def test_errors_table_is_generated_from_the_error_classes() -> None:
    found = re.search(r"<!-- errors:start -->\n(.*?)<!-- errors:end -->", README, re.S)
    assert found, "README lacks the errors markers"
    assert found.group(1).strip() == errors_table().strip(), (
        "README errors table is stale: paste `python -m cache_proxy.errors` between the markers"
    )


def test_every_metric_is_listed() -> None:
    names = {
        metric.name + ("_total" if metric.type == "counter" else "")
        for metric in Metrics().registry.collect()
        if metric.name.startswith("proxy_")
    }
    assert names
    assert not {name for name in names if f"`{name}" not in README}


def test_every_relative_link_in_the_readmes_resolves() -> None:
    broken = []
    committed = subprocess.run(
        ["git", "ls-files", "README.md", "*/README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "README.md" in committed
    for readme in (ROOT / name for name in committed):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (readme.parent / target).exists():
                broken.append(f"{readme.relative_to(ROOT)}: {target}")
    assert not broken
