"""The systems under test, one at a time, on the same checkpoint files.

ours: tritonserver (committed config.pbtxt, engine auto) + cache_proxy + Redis.
original: the rebuilt FastAPI design (perf/baselines/original_app.py) + Redis,
fp32 as in the original.
mlserver: the peer a user would pick instead (perf/peers/mlserver.py), no cache.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from checkout.repository import SOURCE as MODEL_SOURCE
from checkout.repository import set_parameter
from checkpoints.cache_dir import default_cache_dir
from devstack.launch import start_proxy, start_redis
from devstack.process import ServerProcess, free_port, http_status, python_module
from modelctl.convert import calibration, ensure_engines
from perf.compare.stats import triton_counts
from perf.peers import mlserver
from perf.procstat import cpu_seconds_split, resident_mib
from perf.triton.bench import serve as serve_triton


@dataclass
class System:
    name: str
    url: str
    redis_port: int | None  # None: no cache to flush
    servers: list[ServerProcess] = field(default_factory=list)
    metrics_targets: tuple[str, str] | None = None  # ours: (proxy, triton metrics) host:port
    k6_env: dict[str, str] = field(default_factory=dict)  # how k6 talks to it (perf/k6/lib.js)
    proxy_settings: dict[str, str] = field(default_factory=dict)  # ours: how its proxy was started
    tracing: dict[str, str] = field(default_factory=dict)  # ours: its OpenTelemetry variables
    engine_trials: Path | None = None  # ours: where its Triton cached `engine: auto`'s trials

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.servers if s.process is not None]

    def cpu_by_part(self) -> dict[str, float]:
        """User + system CPU seconds so far per server (its name without the
        port), and of each server's child processes (tritonserver's: the Python
        backend stubs); their sum is the whole system's."""
        parts: dict[str, float] = {}
        for server in self.servers:
            if server.process is None:
                continue
            part = re.sub(r"-\d+$", "", server.name)
            own, children = cpu_seconds_split(server.process.pid)
            parts[part] = own
            if children:
                parts[f"{part} children"] = children
        return parts

    def triton_counts(self) -> tuple[float, float] | None:
        """Our tritonserver's (requests inferred, executions) so far, from its
        /metrics; None for the others, and when it does not answer (a run
        goes on without batch sizes)."""
        if self.metrics_targets is None:
            return None
        url = f"http://{self.metrics_targets[1]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return triton_counts(response.read().decode())
        except OSError:
            return None

    def resident_mib(self) -> float:
        return resident_mib(*self.pids())

    def flush_cache(self) -> None:
        if self.redis_port is None:
            return
        subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), "FLUSHALL"],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def restart_proxy(self, logs: Path) -> None:
        """Ours: a new proxy process, on the same settings, in place of the
        running one. Processes of the same code differ by a few percent of
        req/s (hash seed, memory layout), so a comparison of settings takes a
        new process per run rather than one per setting."""
        index = next(i for i, s in enumerate(self.servers) if s.name.startswith("proxy-"))
        self.servers[index].stop()
        proxy = start_proxy(logs, **self.proxy_settings, **self.tracing)
        self.servers[index] = proxy
        self.url = proxy.url
        if self.metrics_targets is not None:
            self.metrics_targets = (proxy.url.removeprefix("http://"), self.metrics_targets[1])

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


def start_ours(
    checkpoint: Path,
    logs: Path,
    engine: str = "auto",
    *,
    name: str = "ours",
    tracing: dict[str, str] | None = None,
) -> System:
    """`engine`: config.pbtxt's `engine` parameter (the committed config says
    auto); `tracing`: OpenTelemetry variables for tritonserver and the proxy."""
    redis, redis_port = start_redis(logs)
    system = System(name, "", redis_port, [redis])
    try:
        engines = ensure_engines(checkpoint, default_cache_dir(), calibration())
        config = (MODEL_SOURCE / "config.pbtxt").read_text()
        if engine != "auto":
            config = set_parameter(config, "engine", engine)
        triton, triton_url, ports = serve_triton(checkpoint, engines, logs, name, config, tracing)
        system.servers.append(triton)
        assert triton.env is not None
        system.engine_trials = Path(triton.env["XDG_CACHE_HOME"]) / "distilbert_sst2-engines"
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        # as behind the ingress (k8s overlays): X-Forwarded-For through a trusted
        # hop tells clients apart (the under-attack step's honest client and attacker)
        system.proxy_settings = {
            "triton_url": triton_url,
            "redis_url": redis_url,
            "trusted_proxies": "127.0.0.1",
        }
        system.tracing = tracing or {}
        proxy = start_proxy(logs, **system.proxy_settings, **system.tracing)
        system.servers.append(proxy)
        system.url = proxy.url
        # each k6 VU a user of its own, as behind the ingress (perf/k6/lib.js)
        system.k6_env = {"ADDRESS_PER_VU": "1"}
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


def start_mlserver(checkpoint: Path, logs: Path) -> System:
    """The peer: MLServer + its Hugging Face runtime (perf/peers/mlserver.py), no cache."""
    mlserver.ensure_venv()
    system = System("mlserver", "", None, k6_env={"PROTOCOL": "v2", "V2_MODEL": mlserver.MODEL})
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    command = mlserver.command(mlserver.write_settings(checkpoint, port))
    try:
        start_http(system, "mlserver", command, port, env, logs, "/v2/models/sst2/ready", 300)
    except BaseException:
        system.stop()
        raise
    return system
