"""Session fixtures: a real tritonserver (standin-tiny), redis-server and proxy."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.redis import redis_command
from devstack.triton import TritonPorts, prepare_backends, server_command, server_env
from modelctl.install import MODEL_NAME, install
from modelctl.resolve import resolve
from modelctl.spec import ModelSpec, default_cache_dir
from tests.servers import ROOT, ServerProcess, free_port, http_status, port_open, python_module


@dataclass(frozen=True)
class Triton:
    ports: TritonPorts
    repository: Path

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"


def copy_model_repository(dest: Path) -> Path:
    """The committed model definition, without any locally installed checkpoint."""
    source = ROOT / "model_repository" / MODEL_NAME
    target = dest / MODEL_NAME
    (target / "1").mkdir(parents=True)
    shutil.copy2(source / "config.pbtxt", target / "config.pbtxt")
    for path in (source / "1").glob("*.py"):
        shutil.copy2(path, target / "1" / path.name)
    return dest


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    return resolve(ModelSpec.parse("standin-tiny"), default_cache_dir())


def start_triton(
    repository: Path, logs: Path, ports: TritonPorts | None = None
) -> tuple[ServerProcess, TritonPorts]:
    ports = ports or TritonPorts(free_port(), free_port(), free_port())
    backends = prepare_backends(ROOT / ".cache" / "triton-backends")
    command = server_command(repository, backends, ports)
    server = ServerProcess(f"triton-{ports.http}", command, logs, server_env())
    server.start().wait_until(
        lambda: http_status(f"http://127.0.0.1:{ports.http}/v2/health/ready") == 200, 180
    )
    return server, ports


@pytest.fixture(scope="session")
def triton(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, logs_dir: Path
) -> Iterator[Triton]:
    repository = copy_model_repository(tmp_path_factory.mktemp("model_repository"))
    install(tiny_checkpoint, repository)
    server, ports = start_triton(repository, logs_dir)
    yield Triton(ports, repository)
    server.stop()


def start_redis(logs: Path, workdir: Path, port: int) -> ServerProcess:
    server = ServerProcess(f"redis-{port}", redis_command(port, workdir), logs)
    return server.start().wait_until(lambda: port_open(port), 20)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[int]:
    port = free_port()
    server = start_redis(logs_dir, tmp_path_factory.mktemp("redis"), port)
    yield port
    server.stop()


ProxyFactory = Callable[..., str]


def launch_proxy(logs: Path, triton_url: str, redis_url: str, **overrides: str) -> ServerProcess:
    """A real `python -m cache_proxy`, ready; keyword args override its env settings."""
    port = free_port()
    env = dict(
        os.environ,
        PROXY_PORT=str(port),
        TRITON_URL=triton_url,
        REDIS_URL=redis_url,
        # Identity polls are inferences: keep them out of Triton's statistics,
        # which tests read to prove what reached Triton.
        MODEL_REFRESH_SECONDS="3600",
    )
    env.update({k.upper(): v for k, v in overrides.items()})
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(f"proxy-{port}", python_module("cache_proxy"), logs, env, url)
    return server.start().wait_until(lambda: http_status(f"{url}/health/ready") == 200, 60)


@pytest.fixture(scope="session")
def start_proxy(logs_dir: Path, triton: Triton, redis_server: int) -> Iterator[ProxyFactory]:
    """Start proxies in front of the session Triton and Redis."""
    started: list[ServerProcess] = []

    def start(**overrides: str) -> str:
        redis_url = f"redis://127.0.0.1:{redis_server}/0"
        started.append(launch_proxy(logs_dir, triton.http_url, redis_url, **overrides))
        return started[-1].url

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def proxy_url(start_proxy: ProxyFactory) -> str:
    return start_proxy()
