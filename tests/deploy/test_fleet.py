"""Many replicas, one truth: a fleet on mixed CPUs shares one cache.

Kubernetes spreads the Triton pods over nodes whose CPUs differ, and `engine:
auto` may choose another engine on each. Here three tritonserver replicas
serve one checkpoint with three fp32 engines, pinned through SST2_ENGINE
(standing in for three CPUs), behind HAProxy balancing per request (so each
proxy reaches every replica), with two proxies and one Redis, under k6's
original profile on each proxy (95% of requests repeat three texts). The
baseline is the same workload against one replica, in the same test, each
phase with empty caches and fresh proxies. Asserted:
- the fleet's cache hit ratio is within 2 points of one replica's;
- no answer is refused (proxy_model_answers_refused stays 0);
- 0 failed requests and no 5xx (k6's verdict).

Then one fp32 replica is replaced by openvino-int8, which scores differently:
one release at two numerics, so two fingerprints at once. Asserted: no
answer is refused, both fingerprints are served, and every answer's scores
are those of the fingerprint it is labelled with (read from each replica
directly), so an int8 answer is never served as the fp32 one's.
The figures go to .artifacts/fleet.json and the test log.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from checkout.paths import MODEL_NAME
from checkout.repository import SOURCE as MODEL_SOURCE
from devstack.process import ServerProcess
from perf.compare.k6run import SCRIPTS, k6_command, k6_env
from tests.browser import ARTIFACTS
from tests.deploy.manifests import of_kind, render
from tests.deploy.rollout import Balancer, Deployment, Lifecycle
from tests.deploy.test_rollout import check_k6
from tests.http import hit_ratio, predict, proxy_counts, scores
from tests.stack import launch_proxy
from trainer.data import sst2_sentences

pytestmark = pytest.mark.integration
FP32_ENGINES = ("torch-fp32", "onnxruntime-fp32", "openvino-fp32")
INT8 = "openvino-int8"  # static int8: batch-invariant, so its answers can be checked exactly
HOLD_SECONDS = 20
SAME_TO_NOISE = 1e-4  # fp32 engines' scores agree this closely (selection's rule, stand-in)


def original_profile(urls: list[str], workdir: Path, label: str) -> int:
    """k6's original profile (3 VUs) on each proxy at once; k6's verdict
    asserted. The requests sent."""
    sentences = workdir / "sentences.json"
    if not sentences.is_file():
        sentences.write_text(json.dumps(sst2_sentences(500, offset=40000)))
    runs = []
    for n, url in enumerate(urls):
        name = f"{label}-{n}"
        env = k6_env(url, sentences, P99_MS="600000", RAMP="2s", HOLD=f"{HOLD_SECONDS}s",
                     DOWN="1s", VUS="3")  # fmt: skip
        command = k6_command(
            "original.js", workdir / f"{name}.csv.gz", workdir / f"{name}-summary.json"
        )
        with (workdir / f"{name}-k6.log").open("w") as log:
            runs.append(
                (name, subprocess.Popen(command, cwd=SCRIPTS, env=env, stdout=log, stderr=log))
            )
    for _, run in runs:
        assert run.wait(HOLD_SECONDS + 120) == 0, run.returncode
    return sum(check_k6(workdir, name) for name, _ in runs)


def direct_scores(http_port: int, texts: list[str]) -> tuple[str, np.ndarray]:
    """One replica's fingerprint and scores for `texts`, bypassing balancer and proxy."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    data = np.array([[t.encode()] for t in texts], dtype=np.object_)
    tensor = httpclient.InferInput("TEXT", list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    outputs = [httpclient.InferRequestedOutput(n) for n in ("PROBABILITIES", "MODEL_INFO")]
    result = client.infer(MODEL_NAME, [tensor], outputs=outputs)
    info = json.loads(result.as_numpy("MODEL_INFO")[0, 0])
    return info["fingerprint"], result.as_numpy("PROBABILITIES")


def test_a_fleet_on_mixed_engines_shares_one_cache_and_refuses_nothing(
    tmp_path: Path, logs_dir: Path, tiny_checkpoint: Path, tiny_engines: Path, redis_server: int
) -> None:
    assert (tiny_engines / "openvino-int8").is_dir(), "openvino-int8 needs SST-2 train beside"
    manifest = next(
        d for d in of_kind(render("dev"), "Deployment") if d["metadata"]["name"] == "sst2-triton"
    )
    lifecycle = Lifecycle.from_deployment(manifest)
    config = (MODEL_SOURCE / "config.pbtxt").read_text()
    balancer = Balancer(tmp_path, logs_dir, lifecycle.readiness_path, "request").start()
    deployment = Deployment(balancer, lifecycle, tmp_path, logs_dir, config)
    proxies: list[ServerProcess] = []

    def phase(label: str, database: int) -> dict[str, float]:
        """Fresh proxies on an empty cache under the original profile: their counts."""
        for proxy in proxies:
            proxy.stop()
        proxies[:] = [
            launch_proxy(
                logs_dir,
                triton_url=balancer.url,
                redis_url=f"redis://127.0.0.1:{redis_server}/{database}",
                model_refresh_seconds="1",
            )
            for _ in range(2)
        ]
        urls = [proxy.url for proxy in proxies]
        requests = original_profile(urls, tmp_path, label)
        return {**proxy_counts(urls), "requests": requests}

    def replica(engine: str) -> int:
        env = {"SST2_ENGINE": engine}
        return deployment.start_replica(tiny_checkpoint, engine, tiny_engines, env).slot

    try:
        slots = {FP32_ENGINES[0]: replica(FP32_ENGINES[0])}
        one = phase("one-replica", 11)
        slots |= {engine: replica(engine) for engine in FP32_ENGINES[1:]}
        fleet = phase("fleet", 12)
        fingerprints = {
            engine: direct_scores(balancer.slots[slot].http, ["x"])[0]
            for engine, slot in slots.items()
        }
        assert fleet["refused"] == 0, (fleet, fingerprints)
        assert hit_ratio(fleet) >= hit_ratio(one) - 0.02, (one, fleet)
        assert len(set(fingerprints.values())) == 1, fingerprints  # one answer fingerprint

        deployment.stop_replica(slots.pop(FP32_ENGINES[2]))  # its node now serves int8
        slots[INT8] = replica(INT8)
        mixed = phase("mixed-numerics", 13)
        texts = sst2_sentences(40, offset=41000)
        fp32, fp32_scores = direct_scores(balancer.slots[slots[FP32_ENGINES[0]]].http, texts)
        int8, int8_scores = direct_scores(balancer.slots[slots[INT8]].http, texts)
        assert int8 != fp32
        assert np.abs(int8_scores - fp32_scores).max() > 10 * SAME_TO_NOISE  # told apart
        expected = {fp32: fp32_scores, int8: int8_scores}
        served: dict[str, int] = {}
        for n, text in enumerate(texts * 2):  # computed, then cached
            reply = predict(proxies[n % 2].url, [text])
            fingerprint = reply.headers["X-Model-Fingerprint"]
            served[fingerprint] = served.get(fingerprint, 0) + 1
            want = expected[fingerprint][n % len(texts)]
            assert scores(reply)[0] == pytest.approx(want.tolist(), abs=SAME_TO_NOISE), (
                fingerprint,
                text,
            )
        assert set(served) == {fp32, int8}, served
        assert proxy_counts([p.url for p in proxies])["refused"] == 0

        figures = {
            "one_replica": one | {"hit_ratio": round(hit_ratio(one), 4)},
            "fleet_three_fp32_engines": fleet | {"hit_ratio": round(hit_ratio(fleet), 4)},
            "fingerprints": fingerprints,
            "mixed_numerics": mixed | {"hit_ratio": round(hit_ratio(mixed), 4)},
            "mixed_numerics_answers_by_fingerprint": served,
        }
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "fleet.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures, indent=2))
    finally:
        for proxy in proxies:
            proxy.stop()
        deployment.stop()
        balancer.stop()
