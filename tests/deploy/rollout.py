"""Triton replicas behind one address, replaced the way `kubectl rollout` would.

The balancer is HAProxy, in one of two modes. `connection`: TCP mode with
`balance random(1)`, like a Kubernetes Service (kube-proxy in iptables or
nftables mode): it picks a replica uniformly at random per new connection
and keeps an established connection on its replica. (HAProxy's default,
`random(2)`, picks the less loaded of two draws, so a new connection seldom
reaches the most loaded replica: during a rollout, the new one that the
proxies' pools moved to. kube-proxy does not weigh load.)
`request`: HTTP mode, round robin per request, like a service mesh or an L7
balancer: a proxy's consecutive calls reach old and new replicas alike, so a
proxy that accepted every answer would flip back and forth. Either sends
nothing to a replica whose readiness check fails. The readiness check is the Triton Deployment's own
readinessProbe path; the pause between leaving the endpoints and SIGTERM is
its preStop; the time allowed to exit is its terminationGracePeriodSeconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkout.repository import copy_model_definition
from devstack.launch import start_triton
from devstack.process import ServerProcess, free_port, port_open
from modelctl.install import install
from tritonserve import TritonPorts

SLOTS = 4  # replicas at most: 3, plus one surge


@dataclass(frozen=True)
class Lifecycle:
    """What the Triton Deployment says about starting and stopping a pod."""

    readiness_path: str
    prestop_seconds: float
    grace_seconds: float
    max_surge: int
    max_unavailable: int

    @classmethod
    def from_deployment(cls, deployment: dict[str, Any]) -> Lifecycle:
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
        rolling = spec["strategy"]["rollingUpdate"]
        return cls(
            readiness_path=container["readinessProbe"]["httpGet"]["path"],
            prestop_seconds=float(container["lifecycle"]["preStop"]["sleep"]["seconds"]),
            grace_seconds=float(pod["terminationGracePeriodSeconds"]),
            max_surge=int(rolling["maxSurge"]),
            max_unavailable=int(rolling["maxUnavailable"]),
        )


BALANCING = {  # mode -> HAProxy's settings for it
    "connection": "    mode tcp\n    balance random(1)",
    "request": "    mode http\n    balance roundrobin\n    option http-server-close",
}


def haproxy_config(
    listen: int, slots: list[int], readiness_path: str, admin: Path, balancing: str
) -> str:
    servers = "\n".join(
        f"    server s{i} 127.0.0.1:{port} check inter 500 fall 1 rise 1 disabled"
        for i, port in enumerate(slots)
    )
    return f"""global
    stats socket {admin} mode 600 level admin
    maxconn 4096
defaults
{BALANCING[balancing]}
    timeout connect 2s
    timeout client 120s
    timeout server 120s
frontend triton
    bind 127.0.0.1:{listen}
    default_backend replicas
backend replicas
    option httpchk GET {readiness_path}
{servers}
"""


@dataclass
class Replica:
    slot: int
    model: str
    server: ServerProcess


@dataclass
class Balancer:
    """HAProxy in front of up to SLOTS Triton HTTP ports."""

    workdir: Path
    logs: Path
    readiness_path: str
    balancing: str = "connection"  # a key of BALANCING
    port: int = field(default_factory=free_port)
    slots: list[TritonPorts] = field(
        default_factory=lambda: [
            TritonPorts(free_port(), free_port(), free_port()) for _ in range(SLOTS)
        ]
    )
    process: ServerProcess | None = None

    @property
    def admin(self) -> Path:
        return self.workdir / "haproxy.sock"

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Balancer:
        config = self.workdir / "haproxy.cfg"
        http_ports = [ports.http for ports in self.slots]
        config.write_text(
            haproxy_config(self.port, http_ports, self.readiness_path, self.admin, self.balancing)
        )
        command = [shutil.which("haproxy") or "haproxy", "-db", "-f", str(config)]
        self.process = ServerProcess(f"haproxy-{self.port}", command, self.logs)
        self.process.start().wait_until(lambda: port_open(self.port), 20)
        return self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.admin))
            sock.sendall(line.encode() + b"\n")
            return sock.makefile().read()

    def add(self, slot: int) -> None:
        """An endpoint again: traffic once its readiness check passes."""
        self.command(f"enable server replicas/s{slot}")

    def remove(self, slot: int) -> None:
        """Out of the endpoints: no new connections; established ones stay."""
        self.command(f"disable server replicas/s{slot}")

    def serving(self, slot: int) -> bool:
        state = self.command("show servers state replicas")
        for line in state.splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[3] == f"s{slot}":
                return parts[5] == "2"  # srv_op_state 2: running
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class Deployment:
    """Triton replicas in balancer slots, started and stopped as a kubelet would."""

    balancer: Balancer
    lifecycle: Lifecycle
    workdir: Path
    logs: Path
    config: str
    replicas: dict[int, Replica] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)

    def note(self, event: str) -> None:
        self.events.append((time.time(), event))

    def start_replica(
        self,
        checkpoint: Path,
        model: str,
        engines: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Replica:
        """A new pod: started, then an endpoint once ready (readiness before
        traffic); `env` adds to its environment (a pinned SST2_ENGINE)."""
        slot = next(s for s in range(SLOTS) if s not in self.replicas)
        repository = copy_model_definition(self.workdir / f"repo-{slot}-{model}", self.config)
        install(checkpoint, repository, engines=engines)
        self.note(f"start s{slot} ({model})")
        server, _ = start_triton(repository, self.logs, self.balancer.slots[slot], env=env)
        self.balancer.add(slot)
        deadline = time.monotonic() + 30
        while not self.balancer.serving(slot):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the balancer never sent traffic to s{slot}")
            time.sleep(0.2)
        self.note(f"ready s{slot} ({model})")
        self.replicas[slot] = Replica(slot, model, server)
        return self.replicas[slot]

    def stop_replica(self, slot: int) -> None:
        """Pod termination: out of the endpoints, preStop, SIGTERM, exit within
        the grace period, which counts from the start of preStop (as in
        Kubernetes): what is left after preStop is all SIGTERM gets."""
        replica = self.replicas.pop(slot)
        self.balancer.remove(slot)
        self.note(f"terminating s{slot} ({replica.model})")
        time.sleep(self.lifecycle.prestop_seconds)
        replica.server.signal(signal.SIGTERM)
        assert replica.server.process is not None
        replica.server.process.wait(self.lifecycle.grace_seconds - self.lifecycle.prestop_seconds)
        with contextlib.suppress(ProcessLookupError):  # the kubelet removes the whole pod
            os.killpg(replica.server.process.pid, signal.SIGKILL)
        self.note(f"exited s{slot} ({replica.model})")

    def roll(self, checkpoint: Path, model: str) -> None:
        """Replace every replica, one at a time (maxSurge 1, maxUnavailable 0)."""
        assert (self.lifecycle.max_surge, self.lifecycle.max_unavailable) == (1, 0)
        old = [s for s, r in self.replicas.items() if r.model != model]
        for slot in old:
            self.start_replica(checkpoint, model)
            self.stop_replica(slot)

    def stop(self) -> None:
        for replica in self.replicas.values():
            replica.server.stop()
