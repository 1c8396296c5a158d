"""Build the project's images with podman, as `docker build` would.

    python -m devstack.containers build [--model standin-tiny]    (make images)

No registry is needed: the base images are made with mmdebstrap from
Debian's archive and imported into podman. Only build arguments differ from
a plain `docker build`: the base image, where torch comes from (pip's local
find-links directory when it holds the CPU wheel) and the model.

podman's defaults that fail on a machine without systemd or cgroup
delegation are overridden: runc instead of crun, cgroupfs, and ulimits no
higher than this session's own (`containers_conf`).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from checkout.paths import ROOT, RUN
from checkpoints.hub import file_sha256
from trainer.data import default_train_tsv

log = logging.getLogger(__name__)

BASE_IMAGE = "localhost/debian-py:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "libpython3.11", "ca-certificates")
# The manifests name redis:7.2.5-alpine, which no registry here serves; this
# stands in for it: Debian's redis-server, run as the manifests say.
REDIS_IMAGE = "localhost/redis-debian:bookworm"
REDIS_PACKAGES = ("redis-server",)
TRITON_IMAGE = "localhost/sst2-triton:dev"
PROXY_IMAGE = "localhost/sst2-proxy:dev"
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TORCH_WHEEL = re.compile(r"torch-2\.13\.0\+cpu-cp311-.*\.whl")


def ulimits() -> list[str]:
    """nofile and nproc at most 4096 and at most this session's soft limits."""
    limits = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, _ = resource.getrlimit(which)
        value = 4096 if soft == resource.RLIM_INFINITY else min(4096, soft)
        limits.append(f"{name}={value}:{value}")
    return limits


@functools.cache  # written once per process, not on every podman call
def containers_conf() -> Path:
    """A containers.conf for `podman kube play` and `podman run` (CONTAINERS_CONF)."""
    path = RUN / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(f'"{limit}"' for limit in ulimits())
    path.write_text(
        f"[containers]\ndefault_ulimits = [{quoted}]\n"
        '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
    )
    return path


def podman(
    *args: str, check: bool = True, capture: bool = False, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run podman with this machine's runtime settings."""
    env = dict(os.environ, CONTAINERS_CONF=str(containers_conf()))
    command = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", *args]
    return subprocess.run(
        command, check=check, text=True, capture_output=capture, timeout=timeout, env=env
    )


def image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def image_size_mb(tag: str) -> float:
    size = podman("image", "inspect", "--format", "{{.Size}}", tag, capture=True).stdout
    return int(size.strip()) / 1e6


def import_debian(tag: str, packages: tuple[str, ...]) -> None:
    """A minimal Debian bookworm with `packages`, made by mmdebstrap (no registry)."""
    if image_exists(tag):
        return
    log.info("making %s with mmdebstrap (%s), about a minute", tag, ", ".join(packages))
    rootfs = RUN / f"{tag.rsplit('/', 1)[-1].replace(':', '-')}.tar"
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            "bookworm",
            str(rootfs),
        ],
        check=True,
        timeout=900,
    )
    # an imported root filesystem has no PATH; set Debian's
    podman(
        "import", "--quiet", "--change", f"ENV PATH={DEBIAN_PATH}", str(rootfs), tag, capture=True
    )
    rootfs.unlink()


def torch_wheel_dir() -> Path | None:
    """pip's find-links directory holding torch 2.13.0's CPU wheel, if any."""
    configured = os.environ.get("PIP_FIND_LINKS", "")
    if not configured:
        configured = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    for entry in configured.split():
        path = Path(entry.removeprefix("file://"))
        if path.is_dir() and any(TORCH_WHEEL.fullmatch(p.name) for p in path.iterdir()):
            return path
    return None


@dataclass(frozen=True)
class Build:
    dockerfile: str
    tag: str
    args: dict[str, str]
    volumes: tuple[str, ...] = ()
    contexts: dict[str, str] = field(default_factory=dict)  # --build-context name=dir


def builds(model: str) -> list[Build]:
    base = {"BASE": BASE_IMAGE}
    wheels = torch_wheel_dir()
    # without the local wheel: the Dockerfile's default, the CPU wheel index
    torch = {"TORCH_SOURCE": "--find-links /wheels"} if wheels else {}
    volumes = (f"{wheels}:/wheels:ro",) if wheels else ()
    # SST-2 train, read in place, calibrates openvino-int8 (Dockerfile.triton);
    # its digest keys the engines layer, which podman caches by the RUN's text
    train = default_train_tsv()
    sst2 = {"sst2": str(train.parent)} if train.is_file() else {}
    data = {"SST2_DATA": file_sha256(train)[:16] if train.is_file() else "none"}
    triton_args = {**base, **torch, **data, "MODEL": model}
    return [
        Build("Dockerfile.proxy", PROXY_IMAGE, base),
        Build("Dockerfile.triton", TRITON_IMAGE, triton_args, volumes, sst2),
    ]


def build(spec: Build) -> None:
    """`podman build` of one Dockerfile from the project root."""
    log.info("building %s from %s", spec.tag, spec.dockerfile)
    args = ["build", "--network", "host", "-f", spec.dockerfile, "-t", spec.tag]
    for limit in ulimits():
        args += ["--ulimit", limit]
    # the host's CA bundle, so that pip in the build trusts this network's TLS
    for volume in ("/etc/ssl/certs:/etc/ssl/certs:ro", *spec.volumes):
        args += ["-v", volume]
    for key, value in spec.args.items():
        args += ["--build-arg", f"{key}={value}"]
    for name, directory in spec.contexts.items():
        args += ["--build-context", f"{name}={directory}"]
    podman(*args, str(ROOT))


def build_all(model: str = "standin-tiny") -> dict[str, float]:
    """Both base images, then both project images; their sizes in MB."""
    import_debian(BASE_IMAGE, BASE_PACKAGES)
    import_debian(REDIS_IMAGE, REDIS_PACKAGES)
    for spec in builds(model):
        build(spec)
    return {tag: image_size_mb(tag) for tag in (PROXY_IMAGE, TRITON_IMAGE)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.containers")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("build", help="build both images with podman")
    command.add_argument("--model", default="standin-tiny", help="MODEL build argument")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for tag, size in build_all(args.model).items():
        print(f"{tag}: {size:.0f} MB")


if __name__ == "__main__":
    main()
