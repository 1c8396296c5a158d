"""A model change never serves predictions cached for the old model.

The new model is the stand-in with its two classifier rows swapped: a real,
different checkpoint (new fingerprint) whose scores are the old ones reversed,
so an old cached answer is unmistakable.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from checkout.repository import SOURCE as MODEL_SOURCE
from checkout.repository import set_parameter
from devstack.launch import start_triton
from modelctl.install import install
from tests.http import predict, request, scores
from tests.stack import launch_proxy, start_stack, swapped_labels_checkpoint

pytestmark = pytest.mark.integration
REFRESH_SECONDS = 1.0


def test_model_change_never_serves_the_old_models_cache(
    tmp_path: Path, logs_dir: Path, tiny_checkpoint: Path, redis_server: int
) -> None:
    config = set_parameter((MODEL_SOURCE / "config.pbtxt").read_text(), "engine", "torch-fp32")
    stack = start_stack(tiny_checkpoint, tmp_path, logs_dir, redis_server, config)
    polling = launch_proxy(  # re-reads the identity every second when idle
        logs_dir,
        triton_url=f"127.0.0.1:{stack.ports.http}",
        redis_url=f"redis://127.0.0.1:{redis_server}/0",
        model_refresh_seconds=str(REFRESH_SECONDS),
    )
    try:
        cached, new = f"cached {uuid.uuid4()}", f"new {uuid.uuid4()}"
        old = predict(stack.proxy.url, [cached])
        old_fingerprint = old.headers["X-Model-Fingerprint"]
        old_scores = scores(old)[0]
        assert predict(polling.url, [cached]).headers["X-Cache"] == "hit"

        stack.triton.kill()  # stop() would wait for the proxies' keep-alive connections
        install(swapped_labels_checkpoint(tiny_checkpoint, tmp_path / "swapped"), stack.repository)
        stack.triton, _ = start_triton(stack.repository, logs_dir, stack.ports)
        swapped_at = time.monotonic()

        # 1. A request with a miss learns the new fingerprint from Triton's own
        #    answer and recomputes the text that was cached for the old model.
        mixed = predict(stack.proxy.url, [cached, new])
        new_fingerprint = mixed.headers["X-Model-Fingerprint"]
        assert new_fingerprint != old_fingerprint
        assert scores(mixed)[0] == pytest.approx(old_scores[::-1], abs=1e-6)
        assert mixed.headers["X-Cache"] == "miss"
        again = predict(stack.proxy.url, [cached])
        assert (again.headers["X-Cache"], scores(again)[0]) == ("hit", scores(mixed)[0])

        # 2. Requests that are all hits: every answer matches the model its
        #    header names, and the proxy moves to the new model within the
        #    refresh interval (it polls Triton's identity when idle).
        while True:
            reply = predict(polling.url, [cached])
            fingerprint = reply.headers["X-Model-Fingerprint"]
            expected = old_scores if fingerprint == old_fingerprint else old_scores[::-1]
            assert scores(reply)[0] == pytest.approx(expected, abs=1e-6)
            if fingerprint == new_fingerprint:
                break
            assert time.monotonic() - swapped_at < REFRESH_SECONDS + 2, "still the old model"
            time.sleep(0.05)
        model = request("GET", f"{polling.url}/model").json()["model"]
        assert (model["fingerprint"], model["name"]) == (new_fingerprint, "standin-tiny-swapped")
    finally:
        polling.stop()
        stack.stop()
