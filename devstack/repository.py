"""Copies of the committed model definition, configured for one run.

Tests and benchmarks serve their own copy (with their own checkpoint and
parameters) so they never touch the checkout's model_repository/.
"""

from __future__ import annotations

import importlib
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from modelctl.install import MODEL_NAME
from modelctl.spec import PROJECT_ROOT

SOURCE = PROJECT_ROOT / "model_repository" / MODEL_NAME


def copy_model_definition(dest: Path, config_text: str | None = None) -> Path:
    """`dest/distilbert_sst2/{config.pbtxt,1/*.py}` without any checkpoint."""
    target = dest / MODEL_NAME
    (target / "1").mkdir(parents=True)
    config = config_text if config_text is not None else (SOURCE / "config.pbtxt").read_text()
    (target / "config.pbtxt").write_text(config)
    for path in (SOURCE / "1").glob("*.py"):
        shutil.copy2(path, target / "1" / path.name)
    return dest


def _parameter_pattern(key: str) -> re.Pattern[str]:
    return re.compile(
        r'(key:\s*"' + re.escape(key) + r'"\s*value:\s*\{\s*string_value:\s*")([^"]*)(")'
    )


def get_parameter(config: str, key: str) -> str:
    """The string value of one `parameters` entry of a config.pbtxt."""
    found = _parameter_pattern(key).findall(config)
    if len(found) != 1:
        raise ValueError(f"config.pbtxt has {len(found)} parameters named {key!r}")
    value: str = found[0][1]
    return value


def set_parameter(config: str, key: str, value: str) -> str:
    """Replace the string value of one `parameters` entry of a config.pbtxt."""
    updated, count = _parameter_pattern(key).subn(lambda m: m.group(1) + value + m.group(3), config)
    if count != 1:
        raise ValueError(f"config.pbtxt has {count} parameters named {key!r}")
    return updated


def set_instance_count(config: str, count: int) -> str:
    """Set the CPU instance count of the (single) instance_group."""
    updated, n = re.subn(r"(instance_group\s*\[\s*\{\s*count:\s*)\d+", rf"\g<1>{count}", config)
    if n != 1:
        raise ValueError("config.pbtxt has no single instance_group count")
    return updated


def model_module(name: str) -> ModuleType:
    """A module of the Triton model's code (classifier, inference, ...), imported
    from the checkout the way the Python backend imports it."""
    code = str(SOURCE / "1")
    if code not in sys.path:
        sys.path.insert(0, code)
    return importlib.import_module(name)


def load_classifier(checkpoint: Path, precision: str) -> Any:
    """The Triton model's own Classifier, in-process, with the committed
    config.pbtxt's parameters, so offline scores (eval, kernel benchmarks)
    match what Triton computes."""
    config = (SOURCE / "config.pbtxt").read_text()
    return model_module("classifier").Classifier(
        checkpoint,
        max_length=int(get_parameter(config, "max_sequence_length")),
        token_budget=int(get_parameter(config, "token_budget")),
        precision=precision,
    )
