"""Start the real servers, each on free ports, and wait until each is ready:
one launcher for the tests and both benchmarks (`make up` runs the same
command lines under honcho). Every server's log goes to `logs/<name>.log`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from checkout.paths import TRITON_BACKENDS
from devstack.monitoring import prometheus_command
from devstack.process import ServerProcess, free_port, http_status, port_open, python_module
from devstack.redis import redis_command
from tritonserve import (
    TritonPorts,
    prepare_backends,
    server_command,
    server_env,
    sweep_shm_regions,
)


def start_redis(
    logs: Path, *extra: str, port: int | None = None, workdir: Path | None = None
) -> tuple[ServerProcess, int]:
    """An in-memory redis-server (`extra`: more options, e.g. TLS or cluster)."""
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"redis-{port}-"))
    server = ServerProcess(f"redis-{port}", redis_command(port, workdir, *extra), logs)
    return server.start().wait_until(lambda: port_open(port), 20), port


def start_triton(
    repository: Path,
    logs: Path,
    ports: TritonPorts | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> tuple[ServerProcess, TritonPorts]:
    """tritonserver on `repository`, ready (its models loaded and warm);
    `env` adds to its environment. What earlier servers left in /dev/shm
    goes first."""
    sweep_shm_regions()
    ports = ports or TritonPorts(free_port(), free_port(), free_port())
    environment = {**server_env(), **(env or {})}
    command = server_command(repository, prepare_backends(TRITON_BACKENDS), ports, env=environment)
    server = ServerProcess(f"triton-{ports.http}", command, logs, environment)
    ready = f"http://127.0.0.1:{ports.http}/v2/health/ready"
    return server.start().wait_until(lambda: http_status(ready) == 200, timeout), ports


def start_proxy(logs: Path, **settings: str) -> ServerProcess:
    """`python -m cache_proxy`, ready; keyword arguments are its settings
    (TRITON_URL and REDIS_URL at least), lower-case."""
    port = free_port()
    env = dict(os.environ, PROXY_PORT=str(port))
    env.update({name.upper(): value for name, value in settings.items()})
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(f"proxy-{port}", python_module("cache_proxy"), logs, env, url)
    return server.start().wait_until(lambda: http_status(f"{url}/health/ready") == 200, 60)


def start_otlp_receiver(logs: Path) -> ServerProcess:
    """devstack.otlp, an OTLP/HTTP trace receiver; its URL is the process's `url`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = python_module("devstack.otlp", "--port", str(port))
    server = ServerProcess(f"otlp-{port}", command, logs, url=url)
    return server.start().wait_until(lambda: http_status(f"{url}/traces") == 200, 30)


def start_prometheus(workdir: Path, logs: Path, proxy: str, triton_metrics: str) -> ServerProcess:
    """Prometheus scraping a proxy and a tritonserver (host:port each) with the
    monitoring component's alert rules; its URL is the process's `url`."""
    port = free_port()
    command = prometheus_command(workdir, f"127.0.0.1:{port}", proxy, triton_metrics)
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(f"prometheus-{port}", command, logs, url=url)
    return server.start().wait_until(lambda: http_status(f"{url}/-/ready") == 200, 60)
