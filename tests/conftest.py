"""Session fixtures: a real tritonserver (standin-tiny), redis-server and proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_proxy.settings import Settings
from checkout.repository import SOURCE as MODEL_SOURCE
from checkout.repository import copy_model_definition, set_parameter
from checkpoints.cache_dir import default_cache_dir
from devstack.launch import start_redis, start_triton
from devstack.process import ServerProcess
from modelctl.convert import calibration, ensure_engines
from modelctl.install import install
from modelctl.resolve import resolve
from modelctl.spec import ModelSpec
from tests.stack import ProxyFactory, Triton, launch_proxy

# Tests build the proxy's settings explicitly. pydantic-settings reads the
# environment (any case), so a proxy variable exported in the shell running
# them (API_KEYS, RATE_LIMIT_PER_SECOND, ...) would change what they test.
for name in Settings.model_fields:
    for variable in (name.upper(), name):
        os.environ.pop(variable, None)
# Likewise OpenTelemetry's (an exported endpoint would turn tracing on).
for variable in [name for name in os.environ if name.upper().startswith("OTEL_")]:
    os.environ.pop(variable)


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    return resolve(ModelSpec.parse("standin-tiny"), default_cache_dir())


@pytest.fixture(scope="session")
def tiny_engines(tiny_checkpoint: Path) -> Path:
    """standin-tiny converted to every engine (cached like checkpoints)."""
    return ensure_engines(tiny_checkpoint, default_cache_dir(), calibration())


@pytest.fixture(scope="session")
def triton(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, logs_dir: Path
) -> Iterator[Triton]:
    # fp32: the contract tests check batch invariance to fp32 noise (int8 is checked
    # through the trained model, served with the committed default config).
    config = set_parameter((MODEL_SOURCE / "config.pbtxt").read_text(), "engine", "torch-fp32")
    repository = copy_model_definition(tmp_path_factory.mktemp("model_repository"), config)
    install(tiny_checkpoint, repository)
    server, ports = start_triton(repository, logs_dir)
    yield Triton(ports, repository, server)
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[int]:
    server, port = start_redis(logs_dir, workdir=tmp_path_factory.mktemp("redis"))
    yield port
    server.stop()


@pytest.fixture(scope="session")
def start_proxy(logs_dir: Path, triton: Triton, redis_server: int) -> Iterator[ProxyFactory]:
    """Start proxies in front of the session Triton and Redis."""
    started: list[ServerProcess] = []

    def start(**overrides: str) -> str:
        settings = {
            "triton_url": triton.http_url,
            "redis_url": f"redis://127.0.0.1:{redis_server}/0",
            **overrides,
        }
        started.append(launch_proxy(logs_dir, **settings))
        return started[-1].url

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def proxy_url(start_proxy: ProxyFactory) -> str:
    return start_proxy()
