"""Both images built from the Dockerfiles, then run as `k8s/overlays/dev` says.

The images are built by podman (devstack/containers.py: only the build
arguments BASE, TORCH_SOURCE and MODEL=standin-tiny differ from a plain
`docker build`). devstack/kubeplay.py then runs every Deployment of the
rendered overlay with the image, command, env, securityContext, volumes,
limits and probes the manifests give. What podman cannot honour is listed in
kubeplay.NOT_EXERCISED, and this test checks that list covers every kind it
does not run.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkout.repository import model_module
from devstack import containers, kubeplay
from devstack.process import free_port, http_status
from tests.browser import ARTIFACTS
from tests.deploy.manifests import containers as specs_of
from tests.deploy.manifests import pod_templates, render
from tests.http import predict, request

pytestmark = pytest.mark.integration
RUN_KINDS = {"Deployment", "ConfigMap", "Secret"}


@pytest.fixture(scope="module")
def image_sizes() -> dict[str, float]:
    sizes = containers.build_all(model="standin-tiny")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "image-sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    return sizes


@pytest.fixture(scope="module")
def pod(image_sizes: dict[str, float]) -> Iterator[kubeplay.Pod]:
    with kubeplay.play(list(render("dev"))) as pod:
        yield pod


def inspect(container: str) -> dict[str, object]:
    out = containers.podman("inspect", container, capture=True).stdout
    info: dict[str, object] = json.loads(out)[0]
    return info


def exec_in(container: str, *command: str) -> tuple[int, str]:
    done = containers.podman("exec", container, *command, capture=True, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


def test_both_images_build_with_the_model_baked_in(image_sizes: dict[str, float]) -> None:
    assert set(image_sizes) == {containers.PROXY_IMAGE, containers.TRITON_IMAGE}
    checkpoint = "/models/distilbert_sst2/1/checkpoint/config.json"
    run = containers.podman(
        "run", "--rm", "--entrypoint", "ls", containers.TRITON_IMAGE, checkpoint, capture=True
    )
    assert run.stdout.strip() == checkpoint  # a file in the image, not a mount
    print({tag: f"{size:.0f} MB" for tag, size in image_sizes.items()})


def test_the_triton_image_has_every_engine(image_sizes: dict[str, float]) -> None:
    """openvino-int8 included: NNCF calibrates on SST-2 train, bind-mounted
    into the build (the sst2 build context), not copied into the image."""
    engines = "/models/distilbert_sst2/1/engines"
    graphs = [f"{engines}/{f}" for f in model_module("engines").GRAPH_FILES.values()]
    run = containers.podman(
        "run", "--rm", "--entrypoint", "ls", containers.TRITON_IMAGE, *graphs, capture=True
    )
    assert sorted(run.stdout.split()) == sorted(graphs)
    run = containers.podman(
        "run", "--rm", "--entrypoint", "sh", containers.TRITON_IMAGE, "-c",
        "test -d /models && test ! -e /data && echo absent", capture=True,
    )  # fmt: skip
    assert run.stdout.strip() == "absent"  # nothing of the data in the image


def test_the_proxy_image_has_no_torch(image_sizes: dict[str, float]) -> None:
    probe = "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('transformers'))"
    run = containers.podman(
        "run", "--rm", "--entrypoint", "python", containers.PROXY_IMAGE, "-c", probe, capture=True
    )
    assert run.stdout.strip() == "None None"


def test_the_dev_overlay_serves_predictions_across_the_containers(pod: kubeplay.Pod) -> None:
    reply = predict(pod.url(8080), ["I love you!", "I hate you!"])
    assert reply.status == 200, reply.body
    assert len(reply.json()["predictions"]) == 2
    assert reply.headers["X-Cache"] == "miss"
    assert predict(pod.url(8080), ["I love you!"]).headers["X-Cache"] == "hit"  # Redis in its pod
    model = request("GET", f"{pod.url(8080)}/model").json()["model"]
    assert (model["name"], model["standin"]) == ("standin-tiny", True)  # the MODEL build argument
    passed = {(p.container, p.kind) for p in pod.probes}
    assert {(c, "readinessProbe") for c in ("triton", "proxy", "redis")} <= passed


@pytest.mark.parametrize(
    ("container", "uid", "writable"),
    [
        ("sst2-triton-triton", "10001", ("/tmp", "/dev/shm")),
        ("sst2-proxy-proxy", "10001", ()),
        ("sst2-redis-redis", "999", ("/data",)),
    ],
)
def test_containers_run_as_the_manifests_say(
    pod: kubeplay.Pod, container: str, uid: str, writable: tuple[str, ...]
) -> None:
    assert exec_in(container, "id", "-u") == (0, uid)
    info = inspect(container)
    host = info["HostConfig"]
    assert isinstance(host, dict)
    assert host["ReadonlyRootfs"] is True
    # drop: ["ALL"]: no capability left, not even in the bounding set
    status = exec_in(container, "cat", "/proc/self/status")[1]
    assert re.search(r"^CapBnd:\s+0+$", status, re.M), status
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert "no-new-privileges" in host["SecurityOpt"]
    limits = manifest_limits()[container]
    assert host["Memory"] == limits["memory"], (host["Memory"], limits)
    assert host["NanoCpus"] == limits["nano_cpus"], (host["NanoCpus"], limits)
    assert exec_in(container, "sh", "-c", "echo x > /write-test")[0] != 0  # read-only root
    for path in writable:
        assert exec_in(container, "sh", "-c", f"echo x > {path}/probe && rm {path}/probe")[0] == 0


def manifest_limits() -> dict[str, dict[str, int]]:
    """Each dev-overlay container's limits as podman reports them (bytes,
    billionths of a CPU), by podman's container name."""
    units = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    limits = {}
    for deployment, template in pod_templates(render("dev")):
        for spec in specs_of(template):
            memory = re.fullmatch(r"(\d+)([KMG]i?)?", str(spec["resources"]["limits"]["memory"]))
            cpu = str(spec["resources"]["limits"]["cpu"])
            assert memory, spec["resources"]
            limits[f"{deployment}-{spec['name']}"] = {
                "memory": int(memory[1]) * units[memory[2] or ""],
                "nano_cpus": int(cpu[:-1]) * 10**6 if cpu.endswith("m") else int(float(cpu) * 1e9),
            }
    return limits


def test_what_podman_cannot_honour_is_named() -> None:
    kinds = {o["kind"] for o in render("dev")}
    assert kinds - RUN_KINDS <= set(kubeplay.NOT_EXERCISED), kinds
    for kind in sorted(kinds - RUN_KINDS):
        print(f"not exercised: {kind}: {kubeplay.NOT_EXERCISED[kind]}")


def test_a_restarted_triton_container_removes_what_its_killed_one_left(
    image_sizes: dict[str, float], tmp_path: Path
) -> None:
    """A Pod's /dev/shm (an emptyDir, here a host directory) outlives its
    container: killed with its stubs (as by the OOM killer), the container
    leaves their shared memory there, and the next container of the pod (the
    same hostname) removes it before it starts."""
    shm = tmp_path / "shm"
    shm.mkdir()
    shm.chmod(0o1777)

    def run() -> str:
        port = free_port()
        name = f"sst2-shm-{port}"
        containers.podman(
            "run", "--detach", "--name", name, "--hostname", "triton-pod-a",
            "-v", f"{shm}:/dev/shm", "-p", f"127.0.0.1:{port}:8000",
            containers.TRITON_IMAGE, capture=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while http_status(f"http://127.0.0.1:{port}/v2/health/ready") != 200:
            assert time.monotonic() < deadline, "tritonserver not ready in 300 s"
            time.sleep(0.5)
        return name

    first = run()
    try:
        containers.podman("kill", "--signal", "KILL", first, capture=True)
        left = sorted(shm.iterdir())
        assert left, "killed with its stubs, the container left their regions"
    finally:
        containers.podman("rm", "--force", first, capture=True, check=False)
    second = run()
    try:
        now = sorted(shm.iterdir())
        assert now and not set(left) & set(now)  # the second's own regions only
    finally:
        containers.podman("rm", "--force", "--time", "5", second, capture=True, check=False)
