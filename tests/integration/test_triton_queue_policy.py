"""Triton's queue policy, the opt-in last line of defence (checkout.repository.
set_queue_policy): what it rejects reaches the client as 429 overloaded with
Retry-After, never a 5xx, and the proxy keeps serving."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient import http as httpclient
from tritonclient.utils import InferenceServerException

from cache_proxy.backend import map_triton_error
from cache_proxy.errors import Overloaded
from checkout.repository import SOURCE, set_parameter, set_queue_policy
from tests.http import metric_samples, predict, request
from tests.stack import MODEL, Stack, Triton, http_client, start_stack, text_input

pytestmark = pytest.mark.integration

QUEUE = 1  # requests Triton may queue beside the one it computes


@pytest.fixture(scope="module")
def policed(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_checkpoint: Path,
    logs_dir: Path,
    redis_server: int,
) -> Iterator[Stack]:
    """Triton with a queue of one request, behind a proxy whose admission lets
    64 one-text chunks go at once (a fixed budget far above them)."""
    config = set_parameter((SOURCE / "config.pbtxt").read_text(), "engine", "torch-fp32")
    stack = start_stack(
        tiny_checkpoint,
        tmp_path_factory.mktemp("queue-policy"),
        logs_dir,
        redis_server,
        config=set_queue_policy(config, max_queue_size=QUEUE, timeout_seconds=10),
        admission_target_seconds="0",
        max_inflight_cost="8192",
        triton_max_batch="1",
    )
    yield stack
    stack.stop()


def pending(triton: Stack) -> float:
    """Requests tritonserver holds (queued or computing), from its metrics."""
    text = request("GET", f"http://127.0.0.1:{triton.ports.metrics}/metrics").body.decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "nv_inference_pending_request_count"
    )


def drained(triton: Stack) -> None:
    deadline = time.monotonic() + 30
    while pending(triton) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_full_triton_queue_is_429_overloaded(policed: Stack) -> None:
    url = policed.proxy.url
    flood = predict(url, [f"queue flood {uuid.uuid4()} {n}" for n in range(64)])
    assert flood.status == 429, flood.body
    assert flood.json()["error_type"] == "overloaded"
    assert flood.headers["Retry-After"] == "1"
    # the proxy serves on, and so does Triton once the flood's admitted rest is done
    drained(policed)
    assert predict(url, ["I love you!"]).status == 200
    # shedding, not a Triton error: counted with its cost, as the proxy's own
    metrics = metric_samples(url)
    shed = (("reason", "model_queue"),)
    assert metrics[("proxy_rejections_total", shed)] >= 1
    assert metrics[("proxy_shed_cost_total", shed)] >= metrics[("proxy_rejections_total", shed)]
    assert ("proxy_triton_errors_total", (("error_type", "overloaded"),)) not in metrics


def test_a_queue_timeout_is_429_overloaded(policed: Stack) -> None:
    """Triton's own text for a request that outwaits its queue timeout (the
    client may ask for less than the policy's) maps to overloaded."""
    drained(policed)
    triton = Triton(policed.ports, policed.repository, policed.triton)
    data = text_input(httpclient, [f"timeout {uuid.uuid4()}"])
    with http_client(triton) as client, pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [data], timeout=1)  # one microsecond
    assert isinstance(map_triton_error(caught.value), Overloaded), caught.value.message()
