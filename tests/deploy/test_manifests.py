"""Static checks of k8s/: renders, schemas, policy, structure (no cluster needed)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from devstack import kubeplay
from tests.deploy.manifests import (
    K8S,
    OVERLAYS,
    Obj,
    containers,
    of_kind,
    pod_templates,
    port_names,
    port_numbers,
    probe_ports,
    render,
    templates_selected,
)
from tritonserve import trace_flags

KUBERNETES_VERSION = "1.31"  # AKS's oldest supported minor at the time of writing
CRD_GROUPS = ("monitoring.coreos.com/",)  # no offline schema: checked structurally below


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    objects = render(overlay)
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= {
        o["kind"] for o in objects
    }
    for obj in objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resources_probes_and_a_locked_down_context(overlay: str) -> None:
    for name, template in pod_templates(render(overlay)):
        pod_security = template["spec"]["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert template["spec"].get("automountServiceAccountToken") is False, name
        for container in containers(template):
            where = f"{name}/{container['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            assert {p for p, _ in probe_ports(container)} == {
                "startupProbe",
                "readinessProbe",
                "livenessProbe",
            }, where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    for name, template in pod_templates(render(overlay)):
        for container in containers(template):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{name}: {image} has no pinned tag"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_and_port_names_line_up(overlay: str) -> None:
    objects = render(overlay)
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    for name, service in services.items():
        selected = templates_selected(objects, service["spec"]["selector"])
        assert selected, f"Service {name} selects no pod template"
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            for template in selected:
                known = port_names(template) if isinstance(target, str) else port_numbers(template)
                assert target in known, f"Service {name}: no container port {target}"
    for name, template in pod_templates(objects):
        for container in containers(template):
            for probe, port in probe_ports(container):
                known = port_names(template) if isinstance(port, str) else port_numbers(template)
                assert port in known, f"{name} {probe}: no port {port}"
        annotations = template["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            assert int(annotations["prometheus.io/port"]) in port_numbers(template), name
    for policy in of_kind(objects, "NetworkPolicy"):
        selected = templates_selected(objects, policy["spec"]["podSelector"]["matchLabels"])
        assert selected, policy["metadata"]["name"]
        for rule in policy["spec"]["ingress"]:
            for peer in rule.get("from", []):
                if "namespaceSelector" in peer:
                    continue  # another namespace's pods (the ingress controller, Prometheus)
                assert templates_selected(objects, peer["podSelector"]["matchLabels"])
            for port in rule.get("ports", []):
                assert all(port["port"] in port_names(t) for t in selected)
    for monitor in of_kind(objects, "ServiceMonitor"):
        matching = [
            s
            for s in services.values()
            if all(
                s["metadata"]["labels"].get(k) == v
                for k, v in monitor["spec"]["selector"]["matchLabels"].items()
            )
        ]
        assert matching, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            assert all(
                endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in matching
            )
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        assert target in {d["metadata"]["name"] for d in of_kind(objects, "Deployment")}
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollouts_never_drop_capacity_and_the_proxy_can_drain(overlay: str) -> None:
    objects = render(overlay)
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    for name in ("sst2-triton", "sst2-proxy"):
        strategy = deployments[name]["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    proxy = deployments["sst2-proxy"]["spec"]["template"]
    config = next(
        c["data"]
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("sst2-proxy-config")
    )
    pre_stop = proxy["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(config["SHUTDOWN_DELAY_SECONDS"]) + float(config["SHUTDOWN_TIMEOUT_SECONDS"])
    assert pre_stop + drain < proxy["spec"]["terminationGracePeriodSeconds"]


SHORT_KINDS = {"HorizontalPodAutoscaler": "hpa", "PodDisruptionBudget": "pdb"}


def yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("directory", ["base", "components/monitoring"])
def test_one_object_per_file_named_component_kind(directory: str) -> None:
    files = yaml_files(K8S / directory)
    assert files
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if path.name == "redis.conf":
            continue
        assert len(docs) == 1, f"{path}: {len(docs)} objects"
        obj: Obj = docs[0]
        component = obj["metadata"]["name"].removeprefix("sst2-") or "sst2"
        kind = SHORT_KINDS.get(obj["kind"], obj["kind"].lower())
        assert path.name == f"{component}-{kind}.yaml", path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_hold_only_patches(overlay: str) -> None:
    directory = K8S / "overlays" / overlay
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"]
    assert all(p.name.endswith("-patch.yaml") for p in yaml_files(directory))
    patched = {p["path"] for p in kustomization["patches"]}
    assert patched == {p.name for p in yaml_files(directory)}


def test_labels_not_common_labels() -> None:
    for path in K8S.rglob("kustomization.yaml"):
        assert not re.search(r"^commonLabels:", path.read_text(), re.M), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_public_surface_is_the_api_over_tls(overlay: str) -> None:
    """Bearer keys never travel in clear, and /metrics, /health/* are not public."""
    (ingress,) = of_kind(render(overlay), "Ingress")
    spec = ingress["spec"]
    hosts = {rule["host"] for rule in spec["rules"]}
    assert hosts and hosts <= {h for tls in spec["tls"] for h in tls["hosts"]}
    assert all(tls["secretName"] for tls in spec["tls"])
    exposed = {p["path"]: p["pathType"] for r in spec["rules"] for p in r["http"]["paths"]}
    assert exposed == {
        "/predict": "Exact",
        "/model": "Exact",
        "/openapi.json": "Exact",
        "/docs": "Prefix",
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_ingress_controller_and_prometheus_reach_the_proxy(overlay: str) -> None:
    """Any other pod could write X-Forwarded-For, which TRUSTED_PROXIES trusts
    from the pod network: the NetworkPolicy must name its peers."""
    objects = render(overlay)
    (policy,) = [
        p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "sst2-proxy"
    ]
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers
    }
    assert namespaces == {"ingress-nginx", "monitoring"}
    assert all(p["podSelector"]["matchLabels"] for p in peers)  # not every pod there
    (config,) = [
        c
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("sst2-proxy-config")
    ]
    assert config["data"]["TRUSTED_PROXIES"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_requires_a_password_from_a_secret_the_proxy_also_reads(overlay: str) -> None:
    objects = render(overlay)
    conf = (K8S / "base" / "redis.conf").read_text()
    assert re.search(r"^protected-mode yes$", conf, re.M)
    refs = {}
    for name, template in pod_templates(objects):
        for container in containers(template):
            for entry in container.get("env", []):
                if entry["name"] == "REDIS_PASSWORD":
                    ref = entry["valueFrom"]["secretKeyRef"]
                    assert not ref.get("optional"), name
                    refs[name] = ref["name"]
    assert set(refs) == {"sst2-redis", "sst2-ratelimit", "sst2-proxy"}
    assert len(set(refs.values())) == 1
    (redis,) = [t for n, t in pod_templates(objects) if n == "sst2-redis"]
    assert '--requirepass "$REDIS_PASSWORD"' in redis["spec"]["containers"][0]["args"][0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rate_limit_buckets_live_in_a_redis_that_never_evicts(overlay: str) -> None:
    """In the cache's LRU Redis a flood of cache writes could evict a bucket and
    forgive a client's debt: the buckets get a Redis of their own."""
    objects = render(overlay)
    (config,) = [
        c
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("sst2-proxy-config")
    ]
    url = config["data"]["RATE_LIMIT_REDIS_URL"]
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
    assert host != config["data"]["REDIS_URL"].removeprefix("redis://").split(":")[0]
    (limits,) = [
        c
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("sst2-ratelimit-config")
    ]
    conf = limits["data"]["ratelimit.conf"]
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)
    assert re.search(rf"^port {port}$", conf, re.M)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_triton_pod_serves_one_numeric_class(overlay: str) -> None:
    """Pods land on nodes with different CPUs: `auto-fp32` (or a pinned
    engine) keeps one answer fingerprint across them, so one shared cache."""
    templates = dict(pod_templates(render(overlay)))
    env = {
        e["name"]: e.get("value") for e in templates["sst2-triton"]["spec"]["containers"][0]["env"]
    }
    assert env.get("SST2_ENGINE") == "auto-fp32", env


def test_the_tracing_component_points_both_deployments_at_one_collector(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "traced"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "namespace: sst2\nresources: [../prod]\ncomponents: [../../components/tracing]\n"
    )
    objects = tuple(kubeplay.render(overlay))
    [config] = [c for c in of_kind(objects, "ConfigMap") if "tracing" in c["metadata"]["name"]]
    endpoint = config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    for name, template in pod_templates(objects):
        if name not in ("sst2-proxy", "sst2-triton"):
            continue
        [container] = template["spec"]["containers"]
        refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
        assert config["metadata"]["name"] in refs, name
        env = {**config["data"], **{e["name"]: e.get("value", "") for e in container["env"]}}
        if name == "sst2-triton":  # its entry point turns the variables into flags
            assert f"opentelemetry,url={endpoint}/v1/traces" in trace_flags(env)
        else:
            assert env["OTEL_SERVICE_NAME"] == "sst2-proxy"
            assert "sst2-proxy-config" in refs[0]  # its own settings kept
