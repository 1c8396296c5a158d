"""Copies of the committed model definition, configured for one run.

Tests and benchmarks serve their own copy (with their own checkpoint and
parameters) so they never touch the checkout's model_repository/.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from checkout.paths import MODEL_NAME, MODEL_REPOSITORY

SOURCE = MODEL_REPOSITORY / MODEL_NAME


def copy_model_definition(dest: Path, config_text: str | None = None) -> Path:
    """`dest/distilbert_sst2/{config.pbtxt,1/*.py}` without any checkpoint."""
    target = dest / MODEL_NAME
    (target / "1").mkdir(parents=True)
    config = config_text if config_text is not None else (SOURCE / "config.pbtxt").read_text()
    (target / "config.pbtxt").write_text(config)
    for path in (SOURCE / "1").glob("*.py"):
        shutil.copy2(path, target / "1" / path.name)
    return dest


def parse_config(config: str) -> ModelConfig:
    """config.pbtxt as Triton's own ModelConfig message."""
    return text_format.Parse(config, ModelConfig())


def get_parameter(config: str, key: str) -> str:
    """The string value of one `parameters` entry of a config.pbtxt."""
    parameters = parse_config(config).parameters
    if key not in parameters:
        raise ValueError(f"config.pbtxt has no parameter named {key!r}")
    value: str = parameters[key].string_value
    return value


def set_parameter(config: str, key: str, value: str) -> str:
    """The config with one existing `parameters` entry set (comments are not kept)."""
    message = parse_config(config)
    if key not in message.parameters:
        raise ValueError(f"config.pbtxt has no parameter named {key!r}")
    message.parameters[key].string_value = value
    return str(text_format.MessageToString(message))


def set_instance_count(config: str, count: int) -> str:
    """The config with its (single) CPU instance_group's count set."""
    message = parse_config(config)
    if len(message.instance_group) != 1:
        raise ValueError("config.pbtxt has no single instance_group")
    message.instance_group[0].count = count
    return str(text_format.MessageToString(message))


def set_batcher(config: str, delay_us: int, *, every_size_preferred: bool) -> str:
    """The config with the dynamic batcher's delay set, and every batch size
    preferred (dispatch at once) or none."""
    message = parse_config(config)
    batching = message.dynamic_batching
    batching.max_queue_delay_microseconds = delay_us
    del batching.preferred_batch_size[:]
    if every_size_preferred:
        batching.preferred_batch_size.extend(range(1, message.max_batch_size + 1))
    return str(text_format.MessageToString(message))


def set_queue_policy(config: str, max_queue_size: int, timeout_seconds: float) -> str:
    """The config with a queue policy for the dynamic batcher: at most
    `max_queue_size` requests queued, and a request queued longer than
    `timeout_seconds` rejected (a client may ask for less). Triton answers
    both with an error the proxy maps to 429 overloaded. Opt-in, a last line
    of defence for clients calling Triton directly: in tritonserver 2.51 any
    queue policy turns off the batcher's payload prefetching, which stalls
    batches up to 500 ms under load (model README, "The dynamic batcher's
    500 ms wait")."""
    if max_queue_size < 1 or timeout_seconds <= 0:
        raise ValueError("a queue policy needs max_queue_size >= 1 and timeout_seconds > 0")
    message = parse_config(config)
    policy = message.dynamic_batching.default_queue_policy
    policy.max_queue_size = max_queue_size
    policy.timeout_action = policy.REJECT
    policy.default_timeout_microseconds = round(timeout_seconds * 1_000_000)
    policy.allow_timeout_override = True
    return str(text_format.MessageToString(message))


def model_module(name: str) -> ModuleType:
    """A module of the Triton model's code (classifier, inference, ...), imported
    from the checkout the way the Python backend imports it."""
    code = str(SOURCE / "1")
    if code not in sys.path:
        sys.path.insert(0, code)
    return importlib.import_module(name)


def load_classifier(
    checkpoint: Path, engine: str = "torch-fp32", engines_dir: Path | None = None, threads: int = 2
) -> Any:
    """The Triton model's own Classifier running `engine`, in-process, with the
    committed config.pbtxt's parameters, so offline scores (eval, kernel
    benchmarks) match what Triton computes."""
    config = (SOURCE / "config.pbtxt").read_text()
    return model_module("classifier").Classifier(
        checkpoint,
        model_module("engines").load(engine, checkpoint, engines_dir, threads),
        max_length=int(get_parameter(config, "max_sequence_length")),
        token_budget=int(get_parameter(config, "token_budget")),
    )
