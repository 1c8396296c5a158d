"""Run the real tritonserver shipped in the nvidia-pytriton wheel (devstack and the image).

The wheel carries tritonserver 2.51, its Python backend and one backend stub
per Python version. The stub must match the interpreter that has torch and
transformers installed, and must load that interpreter's own libpython.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import sysconfig
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
TRACE_SERVICE = "triton-inference-server"  # Triton's spans and the model stub's
# Each Python backend stub talks to tritonserver through a shared-memory region
# in /dev/shm, named this, a token of its server, "-" and a UUID. The token is
# its host's (a hash of the hostname: a pod's name, kept across the container's
# restarts) and the server's own. A server killed with its stubs (an OOM kill,
# a pod's removal) leaves its regions behind, 1 MiB or more each: a Pod's
# /dev/shm outlives a container's restarts. `sweep_shm_regions` removes them.
SHM_PREFIX = "triton_python_backend_shm_region_sst2-"
SHM_OPTION = "python,shm-region-prefix-name="


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def triton_root() -> Path:
    """`pytriton/tritonserver` inside the installed nvidia-pytriton wheel."""
    spec = find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise RuntimeError("nvidia-pytriton is not installed: run `make install`")
    return Path(spec.origin).parent / "tritonserver"


def prepare_backends(dest: Path) -> Path:
    """A --backend-directory whose python/ holds the stub for this interpreter."""
    root = triton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"the nvidia-pytriton wheel has no backend stub for Python {version}")
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in BACKEND_FILES:
        link = python_dir / name
        if not link.exists():
            link.symlink_to(root / "backends" / "python" / name)
    target = python_dir / stub.name
    if not target.exists() or target.stat().st_size != stub.stat().st_size:
        shutil.copy2(stub, target)
    return dest


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver: our libpython first, our venv on PATH.

    The copied stub also needs the wheel's bundled libraries (its rpath is
    relative to the original location).
    """
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR")
    bundled = str(triton_root().parent.parent / "nvidia_pytriton.libs")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libdir, bundled, env.get("LD_LIBRARY_PATH", "")) if p
    )
    # The stub's embedded interpreter finds its prefix (and so the venv's
    # site-packages) through the first python3 on PATH.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


def traces_url(env: Mapping[str, str]) -> str | None:
    """Where OTLP/HTTP traces go, from OpenTelemetry's standard variables (the
    ones the proxy reads), or None: tracing is off."""
    if url := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return url
    if base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return f"{base.rstrip('/')}/v1/traces"
    return None


def trace_flags(env: Mapping[str, str]) -> list[str]:
    """Triton's OpenTelemetry tracing when an endpoint is set. rate=0: Triton
    traces exactly the requests that carry a W3C `traceparent`, which the
    proxy sends only with the calls of requests it sampled; their spans
    (request, model with its queue events, compute) join the proxy's trace."""
    url = traces_url(env)
    if url is None:
        return []
    settings = (
        "mode=opentelemetry",
        "rate=0",
        "count=-1",
        "level=TIMESTAMPS",
        f"opentelemetry,url={url}",
        f"opentelemetry,resource=service.name={TRACE_SERVICE}",
    )
    return [flag for setting in settings for flag in ("--trace-config", setting)]


def host_scope() -> str:
    """The first part of the tokens of this host's servers (8 hex digits)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def new_shm_token() -> str:
    """A server's token: its host's scope and 8 hex digits of its own."""
    return host_scope() + uuid.uuid4().hex[:8]


def shm_option(token: str) -> str:
    """The --backend-config naming the shared-memory regions of a server's stubs."""
    return f"--backend-config={SHM_OPTION}{SHM_PREFIX}{token}-"


def token_of(name: str) -> str:
    """The token at the start of `name`, a region's name (or the option's
    value) after SHM_PREFIX: the token never holds "-", the UUID after it does."""
    return name.split("-", 1)[0]


def live_shm_tokens(proc: Path = Path("/proc")) -> set[str]:
    """The tokens on the command line of a running tritonserver."""
    marker = f"{SHM_OPTION}{SHM_PREFIX}".encode()
    tokens = set()
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process has exited
            continue
        for argument in arguments:
            _, found, rest = argument.partition(marker)
            if found:
                tokens.add(token_of(rest.decode(errors="replace")))
    return tokens


def sweep_shm_regions(
    shm: Path = Path("/dev/shm"), proc: Path = Path("/proc"), scope: str = ""
) -> list[Path]:
    """Remove the regions left by our tritonservers that no longer run, of
    the tokens that start with `scope`, and return them. A server is known to
    run only in this PID namespace: devstack (tests, benchmarks, `make up`)
    sweeps them all; the image sweeps its host's (`host_scope()`), so a
    container sharing another's /dev/shm (`--ipc=host`) leaves that one's be."""
    regions = list(shm.glob(f"{SHM_PREFIX}{scope}*"))
    live = live_shm_tokens(proc)  # after the listing: a region listed has a server started
    removed = []
    for region in regions:
        if token_of(region.name.removeprefix(SHM_PREFIX)) in live:
            continue
        try:
            region.unlink(missing_ok=True)
        except OSError:  # another user's, in the sticky /dev/shm
            continue
        removed.append(region)
    return removed


def server_command(
    repository: Path,
    backends: Path,
    ports: TritonPorts,
    *,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The tritonserver command line for one model repository (`env`, default
    this process's: whether and where it exports traces); its stubs'
    shared-memory regions carry a token of their own (`sweep_shm_regions`)."""
    return [
        str(triton_root() / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--http-address={host}",
        f"--http-port={ports.http}",
        f"--grpc-address={host}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-address={host}",
        f"--metrics-port={ports.metrics}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        "--exit-on-error=true",
        # on SIGTERM, requests in flight get this long (the Deployment's
        # preStop 5 s + 20 s < its terminationGracePeriodSeconds 30)
        "--exit-timeout-secs=20",
        "--log-info=true",
        shm_option(new_shm_token()),
        *trace_flags(os.environ if env is None else env),
    ]
