"""The cache on TLS Redis (rediss://, password) and on a three-node Redis Cluster."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from devstack.launch import start_redis
from devstack.process import ServerProcess, free_port
from tests.http import predict, request, scores
from tests.stack import ProxyFactory, Triton, launch_proxy

pytestmark = pytest.mark.integration
PASSWORD = "s3cret-pass"


def fresh(n: int) -> list[str]:
    return [f"redis mode {uuid.uuid4()}" for _ in range(n)]


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for command in (
        f"req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ca -keyout {ca_key} -out {ca_crt}",
        f"req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out {csr}",
        f"x509 -req -in {csr} -CA {ca_crt} -CAkey {ca_key} -CAcreateserial -days 1 "
        f"-extfile {ext} -out {crt}",
    ):
        subprocess.run(["openssl", *command.split()], check=True, capture_output=True)
    return ca_crt, crt, key


@pytest.fixture
def tls_redis(logs_dir: Path, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    ca, crt, key = make_certificates(tmp_path)
    port = free_port()
    tls = [
        "--port", "0",  # TLS only
        "--tls-port", str(port),
        "--tls-cert-file", str(crt),
        "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca),
        "--tls-auth-clients", "no",
        "--requirepass", PASSWORD,
    ]  # fmt: skip
    server, _ = start_redis(logs_dir, *tls, port=port, workdir=tmp_path)
    yield port, ca
    server.stop()


@pytest.mark.parametrize(
    ("password", "state", "second"),
    [
        (PASSWORD, "ok", "hit"),  # caches over TLS with the password
        ("wrong", "degraded", "miss"),  # a wrong password is a degraded cache, not an error
    ],
)
def test_rediss_url_with_password(
    start_proxy: ProxyFactory,
    tls_redis: tuple[int, Path],
    password: str,
    state: str,
    second: str,
) -> None:
    port, ca = tls_redis
    url = start_proxy(redis_url=f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    assert request("GET", f"{url}/health/ready").json()["redis"] == state
    texts = fresh(3)
    first, then = predict(url, texts), predict(url, texts)
    assert (first.status, then.status) == (200, 200)
    assert (first.headers["X-Cache"], then.headers["X-Cache"]) == ("miss", second)


def test_the_password_can_come_from_its_own_setting(
    start_proxy: ProxyFactory, tls_redis: tuple[int, Path]
) -> None:
    """REDIS_PASSWORD, as the manifests pass Redis's Secret beside a URL in a ConfigMap."""
    port, ca = tls_redis
    url = start_proxy(
        redis_url=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", redis_password=PASSWORD
    )
    assert request("GET", f"{url}/health/ready").json()["redis"] == "ok"
    texts = fresh(2)
    assert predict(url, texts).headers["X-Cache"] == "miss"
    assert predict(url, texts).headers["X-Cache"] == "hit"


@pytest.fixture
def redis_cluster(logs_dir: Path, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Three masters, no replicas: `redis-cli --cluster create`."""
    nodes: list[ServerProcess] = []
    try:
        for i in range(3):
            port, workdir = free_port(), tmp_path / f"node{i}"
            workdir.mkdir()
            cluster = [
                "--cluster-enabled", "yes",
                "--cluster-port", str(free_port()),
                "--cluster-config-file", str(workdir / "nodes.conf"),
                "--cluster-node-timeout", "1000",
            ]  # fmt: skip
            node, _ = start_redis(logs_dir, *cluster, port=port, workdir=workdir)
            node.url = f"127.0.0.1:{port}"
            nodes.append(node)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(n.url for n in nodes), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all("cluster_state:ok" in cli(n, "CLUSTER", "INFO") for n in nodes):
            assert time.monotonic() < deadline, "cluster did not become ok"
            time.sleep(0.2)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def cli(node: ServerProcess, *command: str) -> str:
    host, port = node.url.split(":")
    return subprocess.run(
        ["redis-cli", "-h", host, "-p", port, *command],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout


def test_cluster_mode_spreads_keys_and_degrades_when_a_node_dies(
    start_proxy: ProxyFactory, redis_cluster: list[ServerProcess]
) -> None:
    url = start_proxy(
        redis_url=f"redis://{redis_cluster[0].url}/0",
        redis_cluster="1",
        # the breaker stays open past the predicts below and the readiness probe
        # after them, however slow the machine (0.5 s was not, under `make test`)
        redis_retry_seconds="5",
    )
    assert request("GET", f"{url}/health/ready").json()["redis"] == "ok"
    texts = fresh(30)
    assert predict(url, texts).headers["X-Cache"] == "miss"
    hit = predict(url, texts)
    assert hit.headers["X-Cache"] == "hit"
    # not pinned to one slot: every shard holds some of the 30 keys
    sizes = [int(cli(node, "DBSIZE")) for node in redis_cluster]
    assert all(size > 0 for size in sizes), sizes
    assert sum(sizes) >= 30
    limited = start_proxy(
        redis_url=f"redis://{redis_cluster[2].url}/0",
        redis_cluster="1",
        rate_limit_per_second="0.5",
        rate_limit_burst="1",
    )
    assert [predict(limited, texts[:1]).status for _ in range(2)] == [200, 429]

    redis_cluster[1].kill()
    for _ in range(5):
        reply = predict(url, [*texts[:5], *fresh(1)])
        # recomputed (their shard is gone) in another batch: equal up to fp32
        # batch invariance, not bit for bit
        assert np.allclose(scores(reply)[:5], scores(hit)[:5], atol=1e-5, rtol=0)
    ready = request("GET", f"{url}/health/ready")
    assert (ready.status, ready.json()["redis"]) == (200, "degraded")
    assert "proxy_redis_up 0.0" in request("GET", f"{url}/metrics").body.decode()


def test_the_redis_password_never_reaches_the_log(
    logs_dir: Path, triton: Triton, tls_redis: tuple[int, Path]
) -> None:
    port, ca = tls_redis
    proxy = launch_proxy(
        logs_dir,
        triton_url=triton.http_url,
        redis_url=f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}",
    )
    try:
        assert predict(proxy.url, fresh(1)).status == 200
    finally:
        proxy.stop()
    log = proxy.log_tail(10_000)
    assert "starting" in log and ":***@127.0.0.1" in log
    assert PASSWORD not in log


def test_a_cluster_with_every_node_down_is_a_degraded_cache(start_proxy: ProxyFactory) -> None:
    # RedisClusterException is not a RedisError: it must not stop the proxy
    # from starting, nor fail requests.
    url = start_proxy(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_cluster="1")
    ready = request("GET", f"{url}/health/ready")
    assert (ready.status, ready.json()["redis"]) == (200, "degraded")
    for _ in range(3):
        reply = predict(url, fresh(2))
        assert (reply.status, reply.headers["X-Cache"]) == (200, "miss")
