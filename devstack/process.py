"""Start, wait for and stop real server processes (tests and benchmarks)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from checkout.paths import ROOT

LISTEN_PORTS = range(10000, 32768)  # below Linux's default ephemeral range


def ephemeral_ports(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> range:
    """The ports the kernel hands out to outgoing connections and to bind(0)."""
    try:
        low, high = (int(v) for v in path.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port() -> int:
    """A free port for a server to listen on, outside the ephemeral range: a
    port taken from that range (bind to 0) can meanwhile become the source
    port of any outgoing connection (proxy, HAProxy health checks, k6), and
    the server started later then fails with 'Address already in use'."""
    ephemeral = ephemeral_ports()
    candidates = [p for p in LISTEN_PORTS if p not in ephemeral]
    for _ in range(100):
        port = random.choice(candidates)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found in {LISTEN_PORTS}")


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ServerProcess:
    """A child process with its output in a log file, stopped on `stop()`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        url: str = "",
    ) -> None:
        self.name = name
        self.url = url  # where it serves HTTP, if it does
        self.command = list(command)
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )
        return self

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
