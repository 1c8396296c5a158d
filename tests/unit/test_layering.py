"""Package layering: every top-level package, each importing only the ones
below it, so there are no cycles.

cache_proxy      alone (the proxy image holds nothing else)
tritonserve      alone (the Triton image's entry point)
checkpoints      alone
checkout         alone (where things are; copies of the model definition)
trainer      ->  checkpoints, checkout
modelctl     ->  checkpoints, checkout, trainer
devstack     ->  checkpoints, checkout, trainer, modelctl, tritonserve
perf         ->  all of the above but cache_proxy
tests        ->  anything

The model's own code (model_repository/*/1/*.py) imports no package of ours:
Triton's Python backend loads it alone.
"""

from __future__ import annotations

import ast
from graphlib import TopologicalSorter
from pathlib import Path

import pytest

from checkout.paths import MODEL_REPOSITORY, ROOT

ALLOWED: dict[str, set[str]] = {
    "cache_proxy": set(),
    "tritonserve": set(),
    "checkpoints": set(),
    "checkout": set(),
    "trainer": {"checkpoints", "checkout"},
    "modelctl": {"checkpoints", "checkout", "trainer"},
    "devstack": {"checkpoints", "checkout", "trainer", "modelctl", "tritonserve"},
    "perf": {"checkpoints", "checkout", "trainer", "modelctl", "tritonserve", "devstack"},
}
ALLOWED["tests"] = set(ALLOWED)


def top_level_packages() -> set[str]:
    return {path.parent.name for path in ROOT.glob("*/__init__.py")}


def first_party_imports(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found & top_level_packages()


def test_the_picture_names_every_package_and_has_no_cycle() -> None:
    assert set(ALLOWED) == top_level_packages()
    tuple(TopologicalSorter(ALLOWED).static_order())  # raises CycleError on a cycle


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package: str) -> None:
    imported = first_party_imports(list((ROOT / package).rglob("*.py"))) - {package}
    assert imported <= ALLOWED[package], imported - ALLOWED[package]


def test_the_model_code_imports_no_package_of_ours() -> None:
    code = list(MODEL_REPOSITORY.glob("*/1/*.py"))
    assert code
    assert first_party_imports(code) == set()
