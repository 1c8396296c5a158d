"""Session fixtures: a real tritonserver (standin-tiny), redis-server and proxy."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.process import ServerProcess, free_port, http_status, port_open, python_module
from devstack.redis import redis_command
from devstack.repository import SOURCE as MODEL_SOURCE
from devstack.repository import copy_model_definition, set_parameter
from devstack.triton import TritonPorts, prepare_backends, server_command, server_env
from modelctl.install import install
from modelctl.resolve import resolve
from modelctl.spec import PROJECT_ROOT, ModelSpec, default_cache_dir


@dataclass(frozen=True)
class Triton:
    ports: TritonPorts
    repository: Path
    server: ServerProcess

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"


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
    backends = prepare_backends(PROJECT_ROOT / ".cache" / "triton-backends")
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
    # fp32: the contract tests check exact batch invariance (int8 is checked
    # through the trained model, served with the committed default config).
    config = set_parameter((MODEL_SOURCE / "config.pbtxt").read_text(), "precision", "fp32")
    repository = copy_model_definition(tmp_path_factory.mktemp("model_repository"), config)
    install(tiny_checkpoint, repository)
    server, ports = start_triton(repository, logs_dir)
    yield Triton(ports, repository, server)
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


def launch_proxy(logs: Path, **settings: str) -> ServerProcess:
    """A real `python -m cache_proxy`, ready; keyword args are its env settings
    (triton_url and redis_url at least)."""
    port = free_port()
    env = dict(
        os.environ,
        PROXY_PORT=str(port),
        # Identity polls are inferences: keep them out of Triton's statistics,
        # which tests read to prove what reached Triton.
        MODEL_REFRESH_SECONDS="3600",
    )
    env.update({k.upper(): v for k, v in settings.items()})
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(f"proxy-{port}", python_module("cache_proxy"), logs, env, url)
    return server.start().wait_until(lambda: http_status(f"{url}/health/ready") == 200, 60)


@dataclass
class Stack:
    """A private Triton (own repository copy) with a proxy in front of it."""

    triton: ServerProcess
    ports: TritonPorts
    repository: Path
    proxy: ServerProcess

    def stop(self) -> None:
        self.proxy.stop()
        self.triton.stop()


def start_stack(
    checkpoint: Path,
    workdir: Path,
    logs: Path,
    redis_port: int,
    config: str | None = None,
    **proxy_settings: str,
) -> Stack:
    """Serve `checkpoint` (committed config unless `config`) behind a proxy."""
    repository = copy_model_definition(workdir / "repo", config)
    install(checkpoint, repository)
    triton, ports = start_triton(repository, logs)
    try:
        proxy = launch_proxy(
            logs,
            triton_url=f"127.0.0.1:{ports.http}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            **proxy_settings,
        )
    except BaseException:
        triton.stop()  # never leave a server behind a failed fixture
        raise
    return Stack(triton, ports, repository, proxy)


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
