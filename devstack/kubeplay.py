"""Run a rendered kustomize overlay with podman, the way a kubelet would.

    python -m devstack.kubeplay k8s/overlays/dev     (make kube-dev; Ctrl-C stops)

Every Deployment becomes containers in one podman pod. What each container
gets is read from the manifests, never written a second time here: image,
command and args, env and envFrom (ConfigMaps; optional Secrets that do not
exist are skipped, as Kubernetes does), securityContext (user, read-only root
filesystem, capabilities, no privilege escalation), volumes (emptyDir as
tmpfs, ConfigMap volumes as read-only files), CPU and memory limits, and the
startup, readiness and liveness probes, which are polled here.

What podman cannot honour is listed in NOT_EXERCISED. Services are stood in
for by host entries: the pod shares one network namespace, so a Service name
resolves to 127.0.0.1 and its port must equal the container port it targets.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack.containers import PROXY_IMAGE, REDIS_IMAGE, TRITON_IMAGE, podman
from devstack.process import free_port

log = logging.getLogger(__name__)
Obj = dict[str, Any]

# The manifests' image names (without registry and tag) -> what runs here.
LOCAL_IMAGES = {"sst2-triton": TRITON_IMAGE, "sst2-proxy": PROXY_IMAGE, "redis": REDIS_IMAGE}
NOT_EXERCISED = {
    "Service": "no virtual IP or load balancing: names resolve to the shared pod network",
    "HorizontalPodAutoscaler": "no metrics server or scaling",
    "PodDisruptionBudget": "no node drains",
    "NetworkPolicy": "no network policy enforcement between containers of one pod",
    "Ingress": "no ingress controller",
    "resources.requests": "no scheduler (limits are applied)",
    "topologySpreadConstraints": "one node",
    "lifecycle.preStop": "not run on teardown (drain is tested in tests/deploy/test_rollout.py)",
    "seccompProfile": "podman's default seccomp profile, not the kubelet's RuntimeDefault",
}


def render(overlay: Path) -> list[Obj]:
    """`kubectl kustomize <overlay>` as a list of objects."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def local_image(image: str) -> str:
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if name not in LOCAL_IMAGES:
        raise ValueError(f"no local image for {image!r}; known: {', '.join(LOCAL_IMAGES)}")
    return LOCAL_IMAGES[name]


def memory(quantity: str) -> str:
    """A Kubernetes memory quantity (Mi, Gi, M, G or bytes) as podman's --memory."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([KMG]i?)?", quantity)
    if not match:
        raise ValueError(f"memory quantity {quantity!r}")
    return str(int(match.group(1)) * units.get(match.group(2) or "", 1))


def cpus(quantity: str) -> str:
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_args(container: Obj, objects: list[Obj]) -> list[str]:
    """-e for env and envFrom, resolved from the rendered ConfigMaps and Secrets."""
    configmaps, secrets = by_kind(objects, "ConfigMap"), by_kind(objects, "Secret")
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        found = (configmaps if "configMapRef" in source else secrets).get(ref["name"])
        if found is None:
            if not ref.get("optional"):
                raise ValueError(f"envFrom {ref['name']} is not in the manifests")
            continue
        values.update(found.get("data", {}))
    for entry in container.get("env", []):
        if "value" in entry:
            values[entry["name"]] = str(entry["value"])
            continue
        ref = entry["valueFrom"].get("configMapKeyRef") or entry["valueFrom"].get("secretKeyRef")
        kind = configmaps if "configMapKeyRef" in entry["valueFrom"] else secrets
        data = kind.get(ref["name"], {}).get("data", {})
        if ref["key"] in data:
            values[entry["name"]] = str(data[ref["key"]])
        elif not ref.get("optional"):
            raise ValueError(f"{entry['name']}: {ref['name']}/{ref['key']} is not in the manifests")
    return [arg for name, value in values.items() for arg in ("-e", f"{name}={value}")]


def security_args(pod_spec: Obj, container: Obj) -> list[str]:
    context = {**pod_spec.get("securityContext", {}), **container.get("securityContext", {})}
    args: list[str] = []
    if "runAsUser" in context:
        args += [
            "--user",
            f"{context['runAsUser']}:{context.get('runAsGroup', context['runAsUser'])}",
        ]
    if context.get("runAsNonRoot") and context.get("runAsUser", 0) == 0:
        raise ValueError(f"{container['name']}: runAsNonRoot without a non-zero runAsUser")
    if context.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]  # only the declared volumes
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for cap in context.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    for cap in context.get("capabilities", {}).get("add", []):
        args += ["--cap-add", cap]
    return args


def volume_args(pod_spec: Obj, container: Obj, objects: list[Obj], scratch: Path) -> list[str]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    configmaps = by_kind(objects, "ConfigMap")
    args: list[str] = []
    for mount in container.get("volumeMounts", []):
        volume, path = volumes[mount["name"]], mount["mountPath"]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            if path == "/dev/shm":
                args += ["--shm-size", memory(size or "64Mi")]
            else:
                options = f",tmpfs-size={memory(size)}" if size else ""
                args += ["--mount", f"type=tmpfs,destination={path},tmpfs-mode=1777{options}"]
        elif "configMap" in volume:
            source = scratch / mount["name"]
            source.mkdir(parents=True, exist_ok=True)
            for key, text in configmaps[volume["configMap"]["name"]].get("data", {}).items():
                (source / key).write_text(text)
                (source / key).chmod(0o644)
            source.chmod(0o755)
            args += ["-v", f"{source}:{path}:ro"]
        else:
            raise ValueError(f"volume {mount['name']}: only emptyDir and configMap are supported")
    return args


def resource_args(container: Obj) -> list[str]:
    limits = container.get("resources", {}).get("limits", {})
    args = []
    if "cpu" in limits:
        args += ["--cpus", cpus(str(limits["cpu"]))]
    if "memory" in limits:
        args += ["--memory", memory(str(limits["memory"]))]
    return args


def run_args(deployment: Obj, container: Obj, objects: list[Obj], scratch: Path) -> list[str]:
    """`podman run` arguments (after `run`) for one container of a Deployment."""
    pod_spec = deployment["spec"]["template"]["spec"]
    args = ["--detach", "--name", f"{deployment['metadata']['name']}-{container['name']}"]
    args += env_args(container, objects)
    args += security_args(pod_spec, container)
    args += volume_args(pod_spec, container, objects, scratch / deployment["metadata"]["name"])
    args += resource_args(container)
    if "command" in container:
        args += ["--entrypoint", json.dumps(container["command"])]
    return [*args, local_image(container["image"]), *container.get("args", [])]


@dataclass(frozen=True)
class Probe:
    container: str
    kind: str  # startupProbe | readinessProbe | livenessProbe
    port: int  # on the host
    path: str | None  # None: tcpSocket


@dataclass
class Pod:
    name: str
    ports: dict[int, int] = field(default_factory=dict)  # container port -> host port
    probes: list[Probe] = field(default_factory=list)

    def url(self, container_port: int) -> str:
        return f"http://127.0.0.1:{self.ports[container_port]}"


def named_ports(container: Obj) -> dict[str | int, int]:
    ports: dict[str | int, int] = {}
    for port in container.get("ports", []):
        ports[port["containerPort"]] = port["containerPort"]
        if "name" in port:
            ports[port["name"]] = port["containerPort"]
    return ports


def service_hosts(objects: list[Obj], deployments: list[Obj]) -> list[str]:
    """Each Service name -> 127.0.0.1. The shared pod network maps no ports, so
    a Service port that differs from its container port is not reachable here
    (logged): a container that calls it fails, and so does the test."""
    hosts = []
    for service in by_kind(objects, "Service").values():
        name, selector = service["metadata"]["name"], service["spec"].get("selector", {})
        ports: dict[str | int, int] = {}
        for deployment in deployments:
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                for container in deployment["spec"]["template"]["spec"]["containers"]:
                    ports.update(named_ports(container))
        for port in service["spec"]["ports"]:
            target = ports.get(port.get("targetPort", port["port"]))
            if target != port["port"]:
                log.info("Service %s: port %s -> %s not mapped here", name, port["port"], target)
        hosts += ["--add-host", f"{name}:127.0.0.1"]
    return hosts


def wait_probe(probe: Probe, timeout: float) -> float:
    """Poll a probe until it passes; seconds it took."""
    started = time.monotonic()
    while True:
        try:
            if probe.path is None:
                socket.create_connection(("127.0.0.1", probe.port), timeout=2).close()
                return time.monotonic() - started
            with urllib.request.urlopen(f"http://127.0.0.1:{probe.port}{probe.path}", timeout=2):
                return time.monotonic() - started
        except OSError:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{probe.kind} of {probe.container} never passed") from None
            time.sleep(0.5)


@contextmanager
def play(objects: list[Obj], name: str = "sst2-kubeplay", timeout: float = 300) -> Iterator[Pod]:
    """Run every Deployment of `objects` in one pod; yield once every probe passed."""
    deployments = list(by_kind(objects, "Deployment").values())
    for deployment in deployments:
        if deployment["spec"].get("replicas", 1) != 1:
            raise ValueError(f"{deployment['metadata']['name']}: one replica per Deployment here")
    pod = Pod(name)
    containers = [(d, c) for d in deployments for c in d["spec"]["template"]["spec"]["containers"]]
    for _, container in containers:
        for port in container.get("ports", []):
            pod.ports[port["containerPort"]] = free_port()
    publish = [a for c, h in pod.ports.items() for a in ("-p", f"127.0.0.1:{h}:{c}")]
    podman("pod", "rm", "--force", name, check=False, capture=True)
    podman(
        "pod",
        "create",
        "--name",
        name,
        "--share",
        "net",
        *publish,
        *service_hosts(objects, deployments),
        capture=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="kubeplay-") as scratch:
            Path(scratch).chmod(0o755)
            for deployment, container in containers:
                args = run_args(deployment, container, objects, Path(scratch))
                podman("run", "--pod", name, *args, capture=True)
                ports = named_ports(container)
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if kind in container:
                        spec = container[kind]
                        check = spec.get("httpGet") or spec["tcpSocket"]
                        host = pod.ports[ports[check["port"]]]
                        pod.probes.append(Probe(container["name"], kind, host, check.get("path")))
            for probe in pod.probes:
                log.info(
                    "%s %s passed after %.1fs",
                    probe.container,
                    probe.kind,
                    wait_probe(probe, timeout),
                )
            yield pod
    finally:
        podman("pod", "logs", name, check=False)
        podman("pod", "rm", "--force", "--time", "10", name, check=False, capture=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.kubeplay")
    parser.add_argument("overlay", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with play(render(args.overlay)) as pod:
        print(f"serving: POST {pod.url(8080)}/predict   (Ctrl-C stops)")
        for kind, why in NOT_EXERCISED.items():
            print(f"  not exercised: {kind}: {why}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
