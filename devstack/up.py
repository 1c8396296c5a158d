"""`make up`: redis-server, tritonserver and the proxy on 127.0.0.1, supervised
(MONITORING=1: also Prometheus, scraping both, with the alert rules;
TRACING=1: also a local OTLP receiver, devstack.otlp, that both export
traces to, browsable at http://127.0.0.1:4318/traces).

honcho runs the three (plus a readiness watcher), prefixes their logs, stops
all of them on Ctrl-C or SIGTERM, and stops the rest if one dies.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import honcho.manager
from honcho.manager import Manager

from checkout.paths import MODEL_REPOSITORY, RUN, TRITON_BACKENDS
from devstack.monitoring import prometheus_command
from devstack.redis import redis_command
from modelctl.__main__ import main as modelctl_main
from tritonserve import (
    TritonPorts,
    prepare_backends,
    server_command,
    server_env,
    sweep_shm_regions,
)

DRAIN_SECONDS = 15  # proxy shutdown_timeout (10 s) plus margin, before SIGKILL


@dataclass(frozen=True)
class UpSettings:
    model: str = "auto"
    repository: Path = MODEL_REPOSITORY
    host: str = "127.0.0.1"
    proxy_port: int = 8080
    redis_port: int = 6379
    triton: TritonPorts = field(default_factory=TritonPorts)
    monitoring: bool = False
    prometheus_port: int = 9090
    tracing: bool = False
    otlp_port: int = 4318

    @classmethod
    def from_env(cls) -> UpSettings:
        env = os.environ
        return cls(
            model=env.get("MODEL", "auto"),
            repository=Path(env.get("MODEL_REPOSITORY", MODEL_REPOSITORY)),
            proxy_port=int(env.get("PROXY_PORT", "8080")),
            redis_port=int(env.get("REDIS_PORT", "6379")),
            triton=TritonPorts(
                http=int(env.get("TRITON_HTTP_PORT", "8000")),
                grpc=int(env.get("TRITON_GRPC_PORT", "8001")),
                metrics=int(env.get("TRITON_METRICS_PORT", "8002")),
            ),
            monitoring=env.get("MONITORING", "") not in ("", "0"),
            prometheus_port=int(env.get("PROMETHEUS_PORT", "9090")),
            tracing=env.get("TRACING", "") not in ("", "0"),
            otlp_port=int(env.get("OTLP_PORT", "4318")),
        )

    def ports(self) -> dict[str, int]:
        return {
            "PROXY_PORT": self.proxy_port,
            "REDIS_PORT": self.redis_port,
            "TRITON_HTTP_PORT": self.triton.http,
            "TRITON_GRPC_PORT": self.triton.grpc,
            "TRITON_METRICS_PORT": self.triton.metrics,
            **({"PROMETHEUS_PORT": self.prometheus_port} if self.monitoring else {}),
            **({"OTLP_PORT": self.otlp_port} if self.tracing else {}),
        }

    def tracing_env(self) -> dict[str, str]:
        """What points tritonserver, the model and the proxy at the local receiver."""
        if not self.tracing:
            return {}
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self.host}:{self.otlp_port}"}


def busy_ports(host: str, ports: dict[str, int]) -> list[str]:
    busy = []
    for name, port in ports.items():
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                busy.append(f"{name}={port}")
    return busy


def main() -> int:
    settings = UpSettings.from_env()
    busy = busy_ports(settings.host, settings.ports())
    if busy:
        print(f"up: ports already in use: {', '.join(busy)} (set them to free ports)")
        return 1
    repository = settings.repository.resolve()
    if modelctl_main(["get", settings.model, "--repository", str(repository)]) != 0:
        return 1
    run_dir = RUN
    (run_dir / "redis").mkdir(parents=True, exist_ok=True)
    backends = prepare_backends(TRITON_BACKENDS)
    if left := sweep_shm_regions():
        print(f"up: removed {len(left)} shared-memory regions of tritonservers no longer running")
    url = f"http://{settings.host}:{settings.proxy_port}"
    python = sys.executable
    traced = dict(os.environ, **settings.tracing_env())
    proxy_env = dict(
        traced,
        PYTHONUNBUFFERED="1",
        PROXY_HOST=settings.host,
        PROXY_PORT=str(settings.proxy_port),
        TRITON_URL=f"{settings.host}:{settings.triton.http}",
        REDIS_URL=f"redis://{settings.host}:{settings.redis_port}/0",
    )

    honcho.manager.KILL_WAIT = DRAIN_SECONDS
    manager = Manager()
    manager.add_process("redis", shlex.join(redis_command(settings.redis_port, run_dir / "redis")))
    if settings.tracing:
        receiver = [python, "-m", "devstack.otlp", "--host", settings.host]
        receiver += ["--port", str(settings.otlp_port), "--file", str(run_dir / "traces.jsonl")]
        manager.add_process("traces", shlex.join(receiver))
        print(f"up: traces at http://{settings.host}:{settings.otlp_port}/traces (TRACING=1)")
    triton = server_command(repository, backends, settings.triton, host=settings.host, env=traced)
    manager.add_process("triton", shlex.join(triton), env=server_env(traced))
    manager.add_process("proxy", shlex.join([python, "-m", "cache_proxy"]), env=proxy_env)
    watch = [python, "-m", "devstack.watch", "--url", url]
    if settings.monitoring:
        listen = f"{settings.host}:{settings.prometheus_port}"
        prometheus = prometheus_command(
            run_dir / "prometheus",
            listen,
            proxy=f"{settings.host}:{settings.proxy_port}",
            triton_metrics=f"{settings.host}:{settings.triton.metrics}",
        )
        manager.add_process("prometheus", shlex.join(prometheus))
        watch += ["--prometheus", f"http://{listen}"]
    manager.add_process("ready", shlex.join(watch), env=dict(os.environ, PYTHONUNBUFFERED="1"))
    manager.loop()
    # Ctrl-C / SIGTERM (honcho's 130 / 143) are a clean stop; a child that
    # stopped by itself is a failure even when its own exit code was 0.
    if manager.returncode in (130, 143):
        return 0
    return manager.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
