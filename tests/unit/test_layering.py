"""Package layering: each package imports only the ones below it (no cycles).

cache_proxy        alone (the proxy image holds nothing else)
tritonserve        alone (the Triton image's entry point)
checkpoints        alone
trainer      ->  checkpoints, devstack (data paths, evaluation)
modelctl     ->  checkpoints, trainer, devstack (paths)
"""

from __future__ import annotations

import ast

import pytest

from devstack.paths import ROOT

ALLOWED = {
    "cache_proxy": set(),
    "tritonserve": set(),
    "checkpoints": set(),
    "trainer": {"checkpoints", "devstack"},
    "modelctl": {"checkpoints", "trainer", "devstack"},
}
FIRST_PARTY = {*ALLOWED, "devstack"}


def first_party_imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return (found & FIRST_PARTY) - {package}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()
    assert first_party_imports(package) <= ALLOWED[package]
