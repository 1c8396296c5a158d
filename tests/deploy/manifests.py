"""Render and walk the kustomize manifests (helpers for the deployment tests)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from checkout.paths import ROOT
from devstack import kubeplay

K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
Obj = dict[str, Any]


@cache
def render(overlay: str) -> tuple[Obj, ...]:
    """`kubectl kustomize k8s/overlays/<overlay>` as a tuple of objects."""
    return tuple(kubeplay.render(K8S / "overlays" / overlay))


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def pod_templates(objects: tuple[Obj, ...]) -> Iterator[tuple[str, Obj]]:
    for deployment in of_kind(objects, "Deployment"):
        yield deployment["metadata"]["name"], deployment["spec"]["template"]


def containers(template: Obj) -> list[Obj]:
    return list(template["spec"].get("initContainers", [])) + list(template["spec"]["containers"])


def port_names(template: Obj) -> set[str]:
    return {p["name"] for c in containers(template) for p in c.get("ports", []) if "name" in p}


def port_numbers(template: Obj) -> set[int]:
    return {p["containerPort"] for c in containers(template) for p in c.get("ports", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def templates_selected(objects: tuple[Obj, ...], selector: dict[str, str]) -> list[Obj]:
    return [t for _, t in pod_templates(objects) if selects(selector, t["metadata"]["labels"])]


def probe_ports(container: Obj) -> Iterator[tuple[str, str | int]]:
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container.get(probe, {})
        for handler in ("httpGet", "tcpSocket", "grpc"):
            if handler in action:
                yield probe, action[handler]["port"]
