"""The Triton model contract, through tritonclient HTTP and gRPC."""

from __future__ import annotations

import asyncio
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tokenizers import Tokenizer
from tritonclient.http.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cache_proxy.backend import (
    ReleaseDeclined,
    ReplicaUnavailable,
    TritonBackend,
    map_triton_error,
)
from cache_proxy.errors import BackendFailed, BackendUnavailable
from cache_proxy.metrics import Metrics
from checkout.repository import model_module
from devstack.process import free_port
from tests.stack import MODEL, Triton, http_client, http_scores, stats, text_input
from tests.wordpiece import distilbert
from trainer.data import sst2_sentences as sentences

selection = model_module("selection")

pytestmark = pytest.mark.integration


def test_metadata_matches_the_contract(triton: Triton) -> None:
    with http_client(triton) as client:
        config = client.get_model_config(MODEL)
    assert config["backend"] == "python"
    assert config["max_batch_size"] >= 32
    assert "dynamic_batching" in config
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    inputs = {i["name"]: i for i in config["input"]}
    outputs = {o["name"]: o for o in config["output"]}
    assert inputs["TEXT"]["data_type"] == "TYPE_STRING" and inputs["TEXT"]["dims"] == [1]
    probs = outputs["PROBABILITIES"]
    assert probs["data_type"] == "TYPE_FP32" and probs["dims"] == [2]
    assert probs["label_filename"] == "labels.txt"


def transformers_scores(checkpoint: Path, texts: list[str]) -> np.ndarray:
    """The checkpoint's scores by transformers' own padded forward, truncated
    to 512 tokens: a reference the served code does not share."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.inference_mode():
        return torch.softmax(model(**inputs).logits, dim=-1).numpy()


def test_http_probabilities(triton: Triton, tiny_checkpoint: Path) -> None:
    texts = ["I love you!", "I hate you!", *sentences(6, offset=700)]
    scores = http_scores(triton, texts)
    assert scores.shape == (8, 2) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    # the checkpoint's own scores, text by text (a constant answer fails here)
    assert np.abs(scores - transformers_scores(tiny_checkpoint, texts)).max() <= 1e-5
    assert np.ptp(scores[:, 1]) > 0.01


def test_class_count_returns_label_names(triton: Triton) -> None:
    out = httpclient.InferRequestedOutput("PROBABILITIES", class_count=2)
    with http_client(triton) as client:
        result = client.infer(MODEL, [text_input(httpclient, ["I love you!"])], outputs=[out])
    entries = [e.decode().split(":") for e in result.as_numpy("PROBABILITIES")[0]]
    assert sorted(label for _, _, label in entries) == ["NEGATIVE", "POSITIVE"]
    by_label = {label: (float(score), int(index)) for score, index, label in entries}
    assert by_label["NEGATIVE"][1] == 0 and by_label["POSITIVE"][1] == 1
    assert by_label["NEGATIVE"][0] + by_label["POSITIVE"][0] == pytest.approx(1, abs=1e-5)


def test_grpc_gives_the_same_scores(triton: Triton) -> None:
    texts = sentences(4)
    out = grpcclient.InferRequestedOutput("PROBABILITIES", class_count=0)
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        result = client.infer(MODEL, [text_input(grpcclient, texts)], outputs=[out])
    np.testing.assert_allclose(
        result.as_numpy("PROBABILITIES"), http_scores(triton, texts), atol=1e-6
    )


def test_model_info_names_a_stand_in(triton: Triton) -> None:
    out = httpclient.InferRequestedOutput("MODEL_INFO")
    with http_client(triton) as client:
        result = client.infer(MODEL, [text_input(httpclient, ["x", "y"])], outputs=[out])
    rows = result.as_numpy("MODEL_INFO")
    assert rows.shape == (2, 1)
    info = json.loads(rows[0, 0])
    assert info["name"] == "standin-tiny" and info["standin"] is True
    assert info["labels"] == ["NEGATIVE", "POSITIVE"]
    assert len(info["fingerprint"]) == 16 and info["precision"] == "fp32"


def test_outputs_are_what_was_asked_for(triton: Triton) -> None:
    with http_client(triton) as client:
        # no outputs named: Triton asks the model for all of them
        result = client.infer(MODEL, [text_input(httpclient, ["x"])])
        assert result.as_numpy("PROBABILITIES").shape == (1, 2)
        assert result.as_numpy("MODEL_INFO").shape == (1, 1)
        info_only = client.infer(
            MODEL,
            [text_input(httpclient, ["x", "y", "z"])],
            outputs=[httpclient.InferRequestedOutput("MODEL_INFO")],
        )
    assert info_only.as_numpy("PROBABILITIES") is None
    assert info_only.as_numpy("MODEL_INFO").shape == (3, 1)


def test_the_tokenizer_is_sent_when_asked_for_without_scores(triton: Triton) -> None:
    asked = [httpclient.InferRequestedOutput(n) for n in ("TOKENIZER", "MODEL_INFO")]
    with http_client(triton) as client:
        alone = client.infer(MODEL, [text_input(httpclient, [""])], outputs=asked)
        everything = client.infer(MODEL, [text_input(httpclient, ["x", "y"])])
    served = Tokenizer.from_str(alone.as_numpy("TOKENIZER")[0, 0].decode())
    for text in sentences(20):  # standin-tiny tokenizes like DistilBERT
        assert served.encode(text).ids == distilbert().encode(text).ids
    assert alone.as_numpy("PROBABILITIES") is None
    assert everything.as_numpy("TOKENIZER").tolist() == [[b""], [b""]]  # not 0.5 MB per row
    assert everything.as_numpy("PROBABILITIES").shape == (2, 2)


def test_malformed_request_fails_alone(triton: Triton) -> None:
    """Bad UTF-8 gets INVALID_ARG; requests batched with it still succeed."""
    good_texts = sentences(24)

    def good(text: str) -> np.ndarray:
        return http_scores(triton, [text])

    def bad(_: int) -> str:
        data = np.array([[b"\xff\xfe broken"]], dtype=np.object_)
        tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(data)
        with http_client(triton) as client, pytest.raises(InferenceServerException) as caught:
            client.infer(MODEL, [tensor])
        return str(caught.value)

    with ThreadPoolExecutor(16) as pool:
        bad_results = [pool.submit(bad, i) for i in range(6)]
        good_results = [pool.submit(good, t) for t in good_texts]
        for future in bad_results:
            assert "not valid UTF-8" in future.result()
        for future in good_results:
            assert future.result().shape == (1, 2)


def test_dynamic_batching_merges_concurrent_requests(triton: Triton) -> None:
    before = stats(triton)
    texts = sentences(96, offset=100)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda t: http_scores(triton, [t]), texts))
    after = stats(triton)
    requests = after["requests"] - before["requests"]
    executions = after["executions"] - before["executions"]
    assert requests == 96
    assert executions < requests, f"{executions} executions for {requests} requests"


def test_a_lone_request_does_not_wait_for_company(triton: Triton) -> None:
    """The batcher runs a lone request at once: with a delay (and no preferred
    size it reaches), each would queue for the whole delay."""
    queued_us = []
    for text in sentences(9, offset=500):
        before = stats(triton)
        http_scores(triton, [text])
        queued_us.append((stats(triton)["queue_ns"] - before["queue_ns"]) / 1000)
    assert statistics.median(queued_us) < 1000, queued_us


def test_batched_scores_equal_one_by_one(triton: Triton) -> None:
    texts = sentences(24, offset=300)
    batched = http_scores(triton, texts)
    single = np.concatenate([http_scores(triton, [t]) for t in texts])
    # engine: auto's bound for a checkpoint whose fp32 noise is under the floor
    assert np.abs(batched - single).max() <= selection.DRIFT_MULTIPLE * selection.NOISE_FLOOR


def test_text_far_longer_than_512_tokens(triton: Triton, tiny_checkpoint: Path) -> None:
    texts = ["great " * 5000, "", "terrible " * 600]
    scores = http_scores(triton, texts)
    assert scores.shape == (3, 2)
    # read as its first 512 tokens, exactly as transformers truncates it
    assert np.abs(scores - transformers_scores(tiny_checkpoint, texts)).max() <= 1e-5


async def test_real_triton_errors_map_to_the_proxy_s_taxonomy(triton: Triton) -> None:
    """The proxy's transport against tritonserver's own messages: a replica
    without the model, or no server at all, is retried once on a new
    connection (ReplicaUnavailable); a request Triton rejects is not."""
    metrics = Metrics()
    unknown = TritonBackend(triton.http_url, "no_such_model", metrics)
    gone = TritonBackend(f"127.0.0.1:{free_port()}", MODEL, metrics)
    try:
        for backend in (unknown, gone):
            with pytest.raises(ReplicaUnavailable):
                await backend.classify(["I love you!"], 5.0)
        assert metrics.triton_errors.labels("retried_elsewhere")._value.get() == 2
    finally:
        await unknown.close()
        await gone.close()
    data = np.array([[b"\xff\xfe broken"]], dtype=np.object_)
    tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(data)
    with http_client(triton) as client, pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [tensor])
    error = map_triton_error(caught.value)
    assert isinstance(error, BackendFailed) and not isinstance(error, BackendUnavailable)


async def test_a_replica_declines_a_call_that_names_its_release_retired(triton: Triton) -> None:
    """A rolling update: the proxy names the releases it retired, and a
    replica serving one declines the call (before tokenizing it: model.py),
    so no work is done twice; other calls are answered."""
    metrics = Metrics()
    backend = TritonBackend(triton.http_url, MODEL, metrics)
    try:
        own = (await backend.identity(5.0)).release
        with pytest.raises(ReleaseDeclined):
            await backend.classify(["declined, not computed"], 5.0, retired=["r0", own])
        assert metrics.model_calls_declined._value.get() == 2  # asked again on a fresh connection
        assert metrics.triton_errors.labels("retried_elsewhere")._value.get() == 0  # no error
        rows, identity = await backend.classify(["answered"], 5.0, retired=[own + "0", "r0"])
        assert rows.shape == (1, 2) and identity.release == own
    finally:
        await backend.close()


async def test_a_connection_is_kept_only_while_its_replica_answers_for_a_served_release(
    triton: Triton,
) -> None:
    """Behind an L4 balancer a connection stays with the replica it reached:
    the pool keeps one whose replica answered and closes one whose replica
    declined the call, did not answer in time or cannot be reached, so during
    a rolling update the pool moves to the new replicas instead of asking an
    old one first."""
    backend = TritonBackend(triton.http_url, MODEL, Metrics())
    gone = TritonBackend(f"127.0.0.1:{free_port()}", MODEL, Metrics())

    async def closed(client: InferenceServerClient) -> bool:
        await asyncio.gather(*backend.channels.closing, *gone.channels.closing)
        return bool(client._stub.closed)

    try:
        own = (await backend.identity(5.0)).release
        assert len(backend.channels.idle) == 1
        first = backend.channels.idle[0]
        await backend.classify(["answered on the kept connection"], 5.0)
        assert backend.channels.idle == [first]  # reused, not another connection
        await backend.classify(["on a new connection"], 5.0, fresh=True)
        assert len(backend.channels.idle) == 2 and backend.channels.idle[0] is first
        second = backend.channels.idle[1]
        with pytest.raises(ReleaseDeclined):  # the pooled one, then a new one: both closed
            await backend.classify(["declined"], 5.0, retired=[own])
        assert backend.channels.idle == [first] and await closed(second.client)
        with pytest.raises(BackendUnavailable):  # no answer in time
            await backend.classify(["too slow"], 1e-6)
        assert backend.channels.idle == [] and await closed(first.client)
        await backend.classify(["answered on a new connection"], 5.0)
        assert len(backend.channels.idle) == 1
        third = backend.channels.idle[0]
        with pytest.raises(ReplicaUnavailable):
            await gone.classify(["no server"], 5.0)
        assert gone.channels.idle == []
    finally:
        await backend.close()
        await gone.close()
    assert await closed(third.client)  # closing the backend closes its idle connections
