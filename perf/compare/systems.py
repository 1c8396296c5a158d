"""The two systems under test, each with its own redis-server.

ours: tritonserver (committed config.pbtxt) + cache_proxy, model standin-base.
original: the rebuilt FastAPI design (perf/baselines/original_app.py), same
checkpoint files, fp32 as in the original.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devstack.launch import start_proxy, start_redis
from devstack.process import ServerProcess, free_port, http_status, python_module
from devstack.repository import SOURCE as MODEL_SOURCE
from perf.procstat import cpu_seconds, resident_mib
from perf.triton.bench import serve as serve_triton


@dataclass
class System:
    name: str
    url: str
    redis_port: int
    servers: list[ServerProcess] = field(default_factory=list)
    metrics_targets: tuple[str, str] | None = None  # ours: (proxy, triton metrics) host:port

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.servers if s.process is not None]

    def cpu_seconds(self) -> float:
        return cpu_seconds(*self.pids())

    def resident_mib(self) -> float:
        return resident_mib(*self.pids())

    def flush_cache(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), "FLUSHALL"],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def start_http(
    system: System,
    name: str,
    command: list[str],
    port: int,
    env: dict[str, str],
    logs: Path,
    health_path: str,
    timeout: float = 120,
) -> None:
    """Start `system`'s public HTTP server and wait until `health_path` says 200."""
    system.url = f"http://127.0.0.1:{port}"
    server = ServerProcess(name, command, logs, env, system.url)
    system.servers.append(server)
    server.start().wait_until(lambda: http_status(f"{system.url}{health_path}") == 200, timeout)


def start_ours(checkpoint: Path, logs: Path) -> System:
    redis, redis_port = start_redis(logs)
    system = System("ours", "", redis_port, [redis])
    try:
        triton, triton_url, ports = serve_triton(
            checkpoint, logs, "ours", (MODEL_SOURCE / "config.pbtxt").read_text()
        )
        system.servers.append(triton)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        proxy = start_proxy(logs, triton_url=triton_url, redis_url=redis_url)
        system.servers.append(proxy)
        system.url = proxy.url
        system.metrics_targets = (proxy.url.removeprefix("http://"), f"127.0.0.1:{ports.metrics}")
    except BaseException:
        system.stop()
        raise
    return system


def start_original(checkpoint: Path, logs: Path) -> System:
    redis, redis_port = start_redis(logs)
    system = System("original", "", redis_port, [redis])
    try:
        port = free_port()
        env = dict(
            os.environ,
            BASELINE_CHECKPOINT=str(checkpoint),
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            HF_HUB_OFFLINE="1",
        )
        command = python_module(
            "uvicorn", "perf.baselines.original_app:app", "--host", "127.0.0.1", "--port", str(port)
        )
        start_http(system, "original-app", command, port, env, logs, "/health", timeout=180)
    except BaseException:
        system.stop()
        raise
    return system
