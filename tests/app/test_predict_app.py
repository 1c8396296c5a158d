"""The proxy app through aiohttp's test client, with a fake model and
fakeredis: partial hits, model change, single-flight, admission and error
mapping, in milliseconds (the same paths run against a real tritonserver and
redis-server in tests/integration)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from fakeredis import FakeAsyncRedis
from numpy.typing import NDArray
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from cache_proxy.app import create_app
from cache_proxy.backend import Backend, ReleaseDeclined
from cache_proxy.errors import ApiError, BackendFailed, BackendUnavailable, Overloaded
from cache_proxy.fleet import View
from cache_proxy.keys import BODIES, METRICS, PREDICTOR, SERVED
from cache_proxy.metrics import Metrics
from cache_proxy.settings import Settings
from cache_proxy.tracing import Tracing
from cache_proxy.tracker import ModelIdentity, ModelTracker
from tests.wordpiece import bert_like_json

AiohttpClient = Any  # pytest-aiohttp's factory fixture


class FakeModel:
    """Scores depend on the text and the model; records every call; can be
    held at a gate or made to fail."""

    def __init__(self) -> None:
        self.fingerprint = "model-a"
        self.calls: list[list[str]] = []
        self.fresh: list[bool] = []  # per call: asked on a new connection
        self.rollout: list[str] = []  # fingerprints answering the next calls (replicas)
        self.releases: dict[str, str] = {}  # fingerprint -> release (none: its own)
        self.identity_fresh: list[bool] = []  # per identity poll: on a new connection
        self.identity_retired: list[list[str]] = []  # per identity poll: the releases retired
        self.identity_rollout: list[str] = []  # fingerprints answering the next polls
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None
        self.tokenizer_json: str | None = None  # what tokenizer() sends; None: it fails
        self.seconds_per_unit = 0.0  # compute time per cost unit (len + 2 of each text)
        self.busy = asyncio.Lock()  # one instance: calls compute one after another
        self.identity_failures = 0  # identity() raises a plain bug this many times
        self.retired: list[list[str]] = []  # per call: the releases it named retired
        self.declines = True  # a replica of a named release declines (the model does)

    def identity_now(self) -> ModelIdentity:
        release = self.releases.get(self.fingerprint, "")
        return ModelIdentity.from_info(
            {
                "fingerprint": self.fingerprint,
                "release": release,
                "labels": ["NEGATIVE", "POSITIVE"],
            }
        )

    def score(self, text: str) -> float:
        int8 = 0.05 if self.fingerprint.endswith("-int8") else 0  # other numerics
        return (len(text) % 7 + (3 if self.fingerprint == "model-b" else 0)) / 10 + int8

    async def classify(
        self,
        texts: Sequence[str],
        time_budget: float,
        *,
        fresh: bool = False,
        retired: Sequence[str] = (),
    ) -> tuple[NDArray[np.float32], ModelIdentity]:
        self.calls.append(list(texts))
        self.fresh.append(fresh)
        self.retired.append(list(retired))
        if self.rollout:
            self.fingerprint = self.rollout.pop(0)
        if self.declines and self.identity_now().release in retired:
            raise ReleaseDeclined("the replica serves a retired release")
        if self.gate is not None:
            try:  # like the real backend, the call gives up after its time budget
                async with asyncio.timeout(time_budget):
                    await self.gate.wait()
            except TimeoutError:
                raise BackendUnavailable("no answer within the time budget") from None
        if self.seconds_per_unit:
            async with self.busy:
                await asyncio.sleep(self.seconds_per_unit * sum(len(t) + 2 for t in texts))
        if self.failure is not None:
            raise self.failure
        positive = np.array([self.score(t) for t in texts], dtype=np.float32)
        return np.stack([1 - positive, positive], axis=1), self.identity_now()

    async def identity(
        self, time_budget: float, *, fresh: bool = False, retired: Sequence[str] = ()
    ) -> ModelIdentity:
        self.identity_fresh.append(fresh)
        self.identity_retired.append(list(retired))
        if self.identity_rollout:
            self.fingerprint = self.identity_rollout.pop(0)
        if self.identity_failures:
            self.identity_failures -= 1
            raise RuntimeError("a bug, not an ApiError")
        return self.identity_now()

    async def tokenizer(self, time_budget: float) -> tuple[str, ModelIdentity]:
        if self.tokenizer_json is None:
            raise BackendFailed("the model sent no tokenizer")
        return self.tokenizer_json, self.identity_now()

    async def model_ready(self, max_wait: float) -> bool:
        return self.failure is None


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, model: FakeModel) -> Any:
    async def make(
        backend: FakeModel | None = None, redis: FakeAsyncRedis | None = None, **settings: Any
    ) -> TestClient:
        """A proxy on `backend` (the `model` fixture) and `redis` (its own)."""

        @asynccontextmanager
        async def open_backend(s: Settings, metrics: Metrics) -> AsyncIterator[Backend]:
            yield backend or model

        redis = redis or FakeAsyncRedis()
        app = create_app(
            Settings(**{"model_refresh_seconds": 3600, **settings}), open_backend, lambda s: redis
        )
        client: TestClient = await aiohttp_client(app)
        return client

    return make


async def predict(client: TestClient, texts: list[str], **kwargs: Any) -> tuple[int, Any, Any]:
    kwargs.setdefault("data", json.dumps({"text": texts}))
    async with client.post("/predict", **kwargs) as response:
        return response.status, response.headers, await response.json()


def positives(body: Any) -> list[float]:
    return [entry[1]["score"] for entry in body["predictions"]]


async def test_only_misses_reach_the_model(make_client: Any, model: FakeModel) -> None:
    client = await make_client()
    status, headers, body = await predict(client, ["a", "bb", "a"])
    assert (status, headers["X-Cache"]) == (200, "miss")
    assert positives(body) == pytest.approx([0.1, 0.2, 0.1])
    status, headers, body = await predict(client, ["bb", "ccc"])
    assert (status, headers["X-Cache"]) == (200, "partial")
    assert positives(body) == pytest.approx([0.2, 0.3])
    assert model.calls == [["a", "bb"], ["ccc"]]  # duplicates once, hits never


async def test_a_model_change_recomputes_what_the_old_model_cached(
    make_client: Any, model: FakeModel
) -> None:
    client = await make_client()
    await predict(client, ["a"])
    model.fingerprint = "model-b"
    _, headers, body = await predict(client, ["a", "dddd"])  # a: old cache; dddd: new model
    assert headers["X-Model-Fingerprint"] == "model-b"
    assert positives(body) == pytest.approx([0.4, 0.7])  # both model-b's scores
    assert model.calls[-2:] == [["dddd"], ["a"]]  # a: recomputed by model-b only
    _, headers, body = await predict(client, ["a"])
    assert (headers["X-Cache"], positives(body)) == ("hit", pytest.approx([0.4]))


async def test_a_rolling_update_never_flips_back_to_the_old_model(
    make_client: Any, model: FakeModel
) -> None:
    """Old and new replicas answer side by side: once model-b answered, an
    answer from model-a (a replica whose code does not decline) is asked
    again on a new connection, never served."""
    client = await make_client()
    model.declines = False
    model.rollout = ["model-a", "model-b", "model-a", "model-a", "model-b"]
    assert (await predict(client, ["a"]))[1]["X-Model-Fingerprint"] == "model-a"
    assert (await predict(client, ["bb"]))[1]["X-Model-Fingerprint"] == "model-b"
    _, headers, body = await predict(client, ["ccc"])  # a, a (refused), then b
    assert (headers["X-Model-Fingerprint"], positives(body)) == ("model-b", pytest.approx([0.6]))
    assert model.fresh == [False, False, False, True, True]
    _, headers, body = await predict(client, ["a"])  # cached by model-a: recomputed
    assert (headers["X-Model-Fingerprint"], headers["X-Cache"]) == ("model-b", "miss")
    assert client.app[METRICS].model_answers_refused._value.get() == 2


async def test_old_replicas_decline_before_computing_once_a_release_is_retired(
    make_client: Any, model: FakeModel
) -> None:
    """After model-b answered, every call names model-a's release as retired,
    and a model-a replica declines it (no forward pass, nothing to refuse);
    the call goes again on a new connection until model-b answers it."""
    client = await make_client()
    model.rollout = ["model-a", "model-b", "model-a", "model-a", "model-b"]
    assert (await predict(client, ["a"]))[1]["X-Model-Fingerprint"] == "model-a"
    assert (await predict(client, ["bb"]))[1]["X-Model-Fingerprint"] == "model-b"
    _, headers, body = await predict(client, ["ccc"])  # a, a (both declined), then b
    assert (headers["X-Model-Fingerprint"], positives(body)) == ("model-b", pytest.approx([0.6]))
    release_a = "model-a"  # a release of its own (FakeModel.releases has none)
    assert model.retired == [[], [], [release_a], [release_a], [release_a]]
    assert model.fresh == [False, False, False, True, True]
    assert client.app[METRICS].model_answers_refused._value.get() == 0


async def test_a_proxy_follows_the_release_another_proxy_met_first(make_client: Any) -> None:
    """Two proxies on one Redis during a rolling update: the first meets the
    new release; the second, whose pooled connections still reach an old
    replica, moves at its next refresh and from then on refuses the old one."""
    redis = FakeAsyncRedis()
    first_model, second_model = FakeModel(), FakeModel()  # each proxy's connections
    first = await make_client(first_model, redis)
    second = await make_client(second_model, redis)
    assert (await predict(second, ["a"]))[1]["X-Model-Fingerprint"] == "model-a"
    first_model.fingerprint = "model-b"
    assert (await predict(first, ["bb"]))[1]["X-Model-Fingerprint"] == "model-b"
    await first.app[SERVED].published()  # the shared view is written
    await second.app[SERVED].follow_the_fleet()
    tracker = second.app[SERVED].tracker
    assert tracker.current is not None and tracker.current.fingerprint == "model-b"
    second_model.rollout = ["model-a", "model-b"]  # an old replica, then a new one
    _, headers, body = await predict(second, ["ccc"])
    assert (headers["X-Model-Fingerprint"], positives(body)) == ("model-b", pytest.approx([0.6]))
    assert second_model.fresh[-2:] == [False, True]  # the old answer was asked again
    # a record naming a release this proxy retired itself is never followed back
    old = View({"fingerprint": "model-a", "labels": ["NEGATIVE", "POSITIVE"]}, ("model-b",))
    await redis.set(second.app[SERVED].view_key, old.to_json())
    await second.app[SERVED].follow_the_fleet()
    assert tracker.current.fingerprint == "model-b"


async def test_the_shared_view_belongs_to_one_triton_and_moves_only_a_proxy_that_met_a_release(
    make_client: Any,
) -> None:
    """Deployments sharing one Redis never follow each other, and a proxy
    that has met no release yet waits for its own first answer."""
    redis = FakeAsyncRedis()
    first = await make_client(FakeModel(), redis, triton_url="triton-a:8000")
    second = await make_client(FakeModel(), redis, triton_url="triton-b:8000")
    await predict(second, ["a"])  # model-a
    view = View({"fingerprint": "model-b", "labels": ["NEGATIVE", "POSITIVE"]}, ("model-a",))
    await redis.set(first.app[SERVED].view_key, view.to_json())
    served = second.app[SERVED]
    await served.follow_the_fleet()
    assert served.tracker.current.fingerprint == "model-a"  # another deployment's record
    await redis.set(served.view_key, view.to_json())
    served.tracker = ModelTracker()  # as if Triton had not answered yet
    await served.follow_the_fleet()
    assert served.tracker.current is None
    await predict(second, ["bb"])  # its own first answer: model-a, which the record retired
    await served.follow_the_fleet()
    assert served.tracker.current.fingerprint == "model-b"


async def test_a_poll_answered_by_a_retired_release_asks_again_on_a_new_connection(
    make_client: Any, model: FakeModel
) -> None:
    """An idle proxy's pooled connection may sit on an old replica: its poll
    asks again on a new one rather than waiting out the rollback timer. Both
    name the retired release (a real old replica declines, and the proxy
    keeps no connection to it: cache_proxy/channels.py)."""
    client = await make_client()
    await predict(client, ["a"])
    model.fingerprint = "model-b"
    await predict(client, ["bb"])  # model-a retired
    model.identity_fresh.clear()
    model.identity_retired.clear()
    model.identity_rollout = ["model-a", "model-b"]
    await client.app[SERVED].refresh_identity()
    assert model.identity_fresh == [False, True]
    retired = client.app[SERVED].tracker.refusing()
    assert retired and model.identity_retired == [retired, retired]
    assert client.app[SERVED].tracker.current.fingerprint == "model-b"
    assert client.app[METRICS].model_answers_refused._value.get() == 0  # polls: not answers


async def test_a_proxy_that_met_the_new_release_first_refuses_what_the_fleet_retired(
    make_client: Any,
) -> None:
    """A proxy started mid-rollout whose first answer came from the new
    release learns from the shared record which release it replaced, so an
    old replica's answer is asked again, not taken as yet another release."""
    redis = FakeAsyncRedis()
    model = FakeModel()
    model.fingerprint = "model-b"
    proxy = await make_client(model, redis)
    await predict(proxy, ["a"])
    view = View({"fingerprint": "model-b", "labels": ["NEGATIVE", "POSITIVE"]}, ("model-a",))
    await redis.set(proxy.app[SERVED].view_key, view.to_json())
    await proxy.app[SERVED].follow_the_fleet()
    model.rollout = ["model-a", "model-b"]
    _, headers, _ = await predict(proxy, ["ccc"])
    assert headers["X-Model-Fingerprint"] == "model-b"
    assert model.fresh[-2:] == [False, True]


async def test_one_release_served_at_two_numerics_is_accepted_and_cached_apart(
    make_client: Any, model: FakeModel
) -> None:
    """A fleet serving one release in fp32 and int8 (two fingerprints, as
    engine auto may choose on mixed CPUs): no answer is refused, each is
    cached and labelled under its own fingerprint, and a lookup finds a text
    under either."""
    model.releases = {"model-a": "release-1", "model-a-int8": "release-1"}
    client = await make_client()
    model.rollout = ["model-a", "model-a-int8"]
    _, headers, body = await predict(client, ["a"])
    assert (headers["X-Model-Fingerprint"], positives(body)) == ("model-a", pytest.approx([0.1]))
    _, headers, body = await predict(client, ["bb"])
    assert (headers["X-Model-Fingerprint"], positives(body)) == (
        "model-a-int8",
        pytest.approx([0.25]),
    )
    _, headers, body = await predict(client, ["a", "bb"])
    assert (headers["X-Cache"], headers["X-Model-Fingerprint"]) == ("hit", "model-a, model-a-int8")
    assert positives(body) == pytest.approx([0.1, 0.25])  # each its own model's answer
    assert model.fresh == [False, False]  # nothing asked again
    assert client.app[METRICS].model_answers_refused._value.get() == 0
    model.fingerprint = "model-b"  # a new release replaces both
    _, headers, body = await predict(client, ["a", "dddd"])
    assert (headers["X-Model-Fingerprint"], positives(body)) == (
        "model-b",
        pytest.approx([0.4, 0.7]),
    )


async def test_a_rollback_is_followed_once_the_newer_model_is_gone(
    make_client: Any, model: FakeModel
) -> None:
    client = await make_client()
    await predict(client, ["a"])
    model.fingerprint = "model-b"
    await predict(client, ["bb"])
    client.app[SERVED].tracker.reinstate_after = 0.05
    model.fingerprint = "model-a"  # every replica is back on model-a
    await asyncio.sleep(0.1)
    _, headers, _ = await predict(client, ["ccc"])
    assert headers["X-Model-Fingerprint"] == "model-a"


async def test_a_rollback_is_followed_while_old_replicas_decline(
    make_client: Any, model: FakeModel
) -> None:
    """Every replica back on model-a declines the calls that name it retired,
    until model-b has been silent for reinstate_after: then a call names
    none, model-a answers, and it is followed again (one request, no 5xx)."""
    client = await make_client()
    await predict(client, ["a"])
    model.fingerprint = "model-b"
    await predict(client, ["bb"])
    client.app[SERVED].tracker.reinstate_after = 0.2
    model.fingerprint = "model-a"  # at once: no sleep past the window
    status, headers, _ = await predict(client, ["ccc"])
    assert (status, headers["X-Model-Fingerprint"]) == (200, "model-a")
    asked = model.retired[2:]
    assert asked[0] == ["model-a"] and asked[-1] == []  # declined, then answered
    assert client.app[METRICS].model_answers_refused._value.get() == 0


async def test_chunks_answered_by_different_models_are_one_answer(
    make_client: Any, model: FakeModel
) -> None:
    """A request split into chunks whose answers come from both models during
    a rolling update gets 200 with every score from the new model."""
    client = await make_client(max_inflight_cost=4)  # one text of cost 3 per chunk
    model.rollout = ["model-a", "model-b", "model-a", "model-b"]  # replicas alternate
    status, headers, body = await predict(client, ["a", "b"])
    assert (status, headers["X-Model-Fingerprint"]) == (200, "model-b")
    assert positives(body) == pytest.approx([0.4, 0.4])


async def test_identical_texts_in_flight_are_computed_once(
    make_client: Any, model: FakeModel
) -> None:
    client = await make_client()
    model.gate = asyncio.Event()
    first = asyncio.create_task(predict(client, ["same", "x"]))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(predict(client, ["same"]))
    await asyncio.sleep(0.05)
    model.gate.set()
    (s1, _, b1), (s2, h2, b2) = await asyncio.gather(first, second)
    assert (s1, s2) == (200, 200)
    assert positives(b1)[0] == positives(b2)[0]
    assert model.calls == [["same", "x"]]
    assert h2["X-Cache"] == "miss"  # computed (by the other request), not cached


class HeldWrites:
    """Cache writes held, each until its fingerprint's gate is set."""

    def __init__(self, predictor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gates: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.done: list[str] = []  # the fingerprints written, in order
        put_many = predictor.cache.put_many

        async def held(fingerprint: str, items: Any) -> None:
            await self.gates[fingerprint].wait()
            await put_many(fingerprint, items)
            self.done.append(fingerprint)

        monkeypatch.setattr(predictor.cache, "put_many", held)

    async def release(self, fingerprint: str) -> None:
        """Let `fingerprint`'s writes through, and wait for them (at most 2 s)."""
        self.gates[fingerprint].set()
        for _ in range(200):
            if fingerprint in self.done:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{fingerprint}'s cache writes did not finish in 2 s")


async def until_released(predictor: Any) -> None:
    """Until no text is claimed (at most 2 s)."""
    for _ in range(200):
        if not predictor.flights:
            break
        await asyncio.sleep(0.01)


async def test_the_answer_does_not_wait_for_the_cache_write(
    make_client: Any, model: FakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A computed text is answered before it is cached; until it is, a request
    for it gets the same answer as a hit, computed once; then Redis holds it."""
    client = await make_client()
    predictor = client.app[PREDICTOR]
    writes = HeldWrites(predictor, monkeypatch)
    status, headers, body = await asyncio.wait_for(predict(client, ["a"]), timeout=5)
    assert (status, headers["X-Cache"]) == (200, "miss")
    _, headers, again = await predict(client, ["a"])
    assert (headers["X-Cache"], again) == ("hit", body)
    assert model.calls == [["a"]]
    assert len(predictor.flights) == 1  # claimed until cached
    await writes.release("model-a")
    await until_released(predictor)
    assert len(predictor.flights) == 0
    assert (await predictor.cache.get_many(["model-a"], ["a"], 2))[0] is not None


async def test_a_text_answered_by_the_old_release_and_not_yet_cached_is_computed_by_the_new(
    make_client: Any, model: FakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release changes while model-a's answer for `a` is still being
    written: a request for `a` gets model-b's answer, not a 503 for a model
    that keeps changing (model-a's settled answer is not handed out again)."""
    client = await make_client()
    predictor = client.app[PREDICTOR]
    writes = HeldWrites(predictor, monkeypatch)
    assert (await predict(client, ["a"]))[0] == 200  # model-a: settled, not cached yet
    model.fingerprint = "model-b"
    assert (await predict(client, ["bb"]))[1]["X-Model-Fingerprint"] == "model-b"
    status, headers, body = await asyncio.wait_for(predict(client, ["a"]), timeout=5)
    assert (status, headers.get("X-Model-Fingerprint")) == (200, "model-b"), body
    assert positives(body) == pytest.approx([0.4])
    assert model.calls == [["a"], ["bb"], ["a"]]
    await writes.release("model-a")
    assert len(predictor.flights) == 2  # model-a's write released only its own claim:
    _, headers, again = await predict(client, ["a"])  # model-b's "a" is still shared
    assert (headers["X-Model-Fingerprint"], again) == ("model-b", body)
    assert model.calls == [["a"], ["bb"], ["a"]]
    await writes.release("model-b")
    await until_released(predictor)
    assert len(predictor.flights) == 0


async def test_work_past_the_budget_waits_then_runs(make_client: Any, model: FakeModel) -> None:
    client = await make_client(max_inflight_cost=10)  # "abcdefgh" costs 10
    model.gate = asyncio.Event()
    tasks = [asyncio.create_task(predict(client, [f"abcdefg{i}"])) for i in range(3)]
    await asyncio.sleep(0.05)
    assert len(model.calls) == 1  # one chunk in flight, two waiting
    model.gate.set()
    assert [status for status, _, _ in await asyncio.gather(*tasks)] == [200, 200, 200]
    assert len(model.calls) == 3


async def test_texts_cost_their_tokens_once_the_model_sent_its_tokenizer(
    make_client: Any, model: FakeModel
) -> None:
    model.tokenizer_json = bert_like_json()
    client = await make_client(max_inflight_cost=10)
    served = client.app[SERVED]
    for _ in range(200):  # fetched by the model refresh loop at start
        if served.text_costs().tokenizer is not None:
            break
        await asyncio.sleep(0.01)
    model.gate = asyncio.Event()
    # 13 and 16 by their characters, 5 tokens each: both fit a budget of 10 at once
    tasks = [asyncio.create_task(predict(client, [t])) for t in ("you you you", "love love love")]
    await asyncio.sleep(0.05)
    assert len(model.calls) == 2
    model.gate.set()
    assert [status for status, _, _ in await asyncio.gather(*tasks)] == [200, 200]


@pytest.mark.parametrize(
    ("failure", "status", "error_type"),
    [
        (BackendUnavailable("the model is unavailable"), 503, "backend_unavailable"),
        (Overloaded("the model's queue is full"), 429, "overloaded"),
        (RuntimeError("a bug"), 500, "internal"),
    ],
)
async def test_backend_errors_map_to_the_taxonomy(
    make_client: Any, model: FakeModel, failure: Exception, status: int, error_type: str
) -> None:
    client = await make_client()
    model.failure = failure
    got, headers, body = await predict(client, ["fails"])
    assert (got, body["error_type"]) == (status, error_type)
    if isinstance(failure, ApiError) and failure.retry_after:
        assert headers["Retry-After"] == "1"
    model.failure = None
    assert (await predict(client, ["fails"]))[0] == 200  # nothing cached, nothing stuck


async def test_gzip_bodies_and_text_limits(make_client: Any) -> None:
    client = await make_client(max_text_chars=5)
    body = gzip.compress(json.dumps({"text": ["hi"]}).encode())
    status, _, reply = await predict(client, [], data=body, headers={"Content-Encoding": "gzip"})
    assert (status, positives(reply)) == (200, pytest.approx([0.2]))
    status, _, body = await predict(client, ["toolong"])
    assert (status, body["error_type"]) == (413, "payload_too_large")


async def test_readiness_degrades_but_stays_up_when_the_model_fails(
    make_client: Any, model: FakeModel
) -> None:
    client = await make_client()
    async with client.get("/health/ready") as response:
        assert (response.status, (await response.json())["status"]) == (200, "ready")
    model.failure = BackendUnavailable("down")
    client.app[SERVED].readiness = None  # past the one-second readiness cache
    async with client.get("/health/ready") as response:
        assert (response.status, (await response.json())["status"]) == (200, "degraded")


async def test_an_unknown_route_lists_the_real_ones(make_client: Any) -> None:
    client = await make_client()
    async with client.get("/nope") as response:
        body = await response.json()
    assert (response.status, body["error_type"]) == (404, "not_found")
    for route in ("POST /predict", "GET /model", "GET /health/ready", "GET /openapi.json"):
        assert route in body["error"]


async def until(condition: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 (polls state the app changes, no event to wait on)
            await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    ("seconds_per_unit", "low", "high"),
    [(1e-3, 150, 400), (1e-5, 4096, 8192)],  # 1,000 units/s: a budget of 250; fast: large
)
async def test_the_budget_is_learned_from_the_model_s_speed(
    make_client: Any, model: FakeModel, seconds_per_unit: float, low: int, high: int
) -> None:
    client = await make_client(admission_target_seconds=0.25)
    model.seconds_per_unit = seconds_per_unit
    requests = [predict(client, [f"r{r}-text-{i}" for i in range(8)]) for r in range(6)]
    assert {status for status, _, _ in await asyncio.gather(*requests)} == {200}
    admission = client.app[PREDICTOR].admission
    assert low <= admission.budget <= high
    async with client.get("/metrics") as response:
        exported = await response.text()
    assert f"proxy_inflight_budget_cost {float(admission.budget)}" in exported
    assert "proxy_model_rate_cost_per_second 0.0" not in exported


@pytest.mark.parametrize("failure", ["deadline", "queue_full"])
async def test_work_sent_before_its_request_failed_holds_its_budget_and_is_cached(
    make_client: Any, model: FakeModel, failure: str
) -> None:
    """Triton computes what it was sent whatever becomes of the request: the
    chunk keeps its budget until the answer arrives, which is then cached."""
    if failure == "deadline":
        client = await make_client(request_timeout_seconds=0.2)
        texts, expected, sent = ["sent-1", "sent-2"], 503, 16
    else:  # the first text is sent, the second waits (8 + 9 > 16), the third is refused: 429
        client = await make_client(
            admission_target_seconds=0, max_inflight_cost=16, max_queued_cost=1
        )
        texts, expected, sent = ["sent-1", "waits-1", "refused"], 429, 8
    admission = client.app[PREDICTOR].admission
    model.gate = asyncio.Event()
    status, _, body = await asyncio.wait_for(predict(client, texts), timeout=4)
    assert status == expected
    if failure == "queue_full":  # not the admission wait's timeout (5 s), also a 429
        assert admission.metrics.rejections.labels("queue_full")._value.get() == 1, body
    assert admission.inflight == sent  # still computing
    model.gate.set()
    await until(lambda: admission.inflight == 0)
    calls = len(model.calls)
    status, headers, _ = await predict(client, ["sent-1"])
    assert (status, headers["X-Cache"], len(model.calls)) == (200, "hit", calls)


async def test_a_request_too_large_for_its_deadline_is_refused_before_any_work(
    make_client: Any, model: FakeModel
) -> None:
    client = await make_client(request_timeout_seconds=1.0, admission_target_seconds=0.25)
    model.seconds_per_unit = 1e-3  # 1,000 units/s: a deadline holds about 1,000
    status, _, _ = await predict(client, [f"learn the rate {i}" for i in range(24)])
    assert status == 200
    calls = len(model.calls)
    status, headers, body = await predict(client, [f"{i} " + "x" * 200 for i in range(20)])
    assert (status, body["error_type"]) == (413, "payload_too_large")
    assert "holds at most" in body["error"] and "Retry-After" not in headers
    assert len(model.calls) == calls  # nothing was sent


async def test_concurrent_requests_reserve_their_cost_before_running(
    make_client: Any, model: FakeModel
) -> None:
    """A burst of concurrent requests cannot run ahead of the bucket: each
    reserves its texts' cost (here 1 + 3 x 12) before any work starts."""
    client = await make_client(
        rate_limit_per_second=0.01, rate_limit_burst=120, admission_target_seconds=0
    )
    model.gate = asyncio.Event()
    requests = [
        asyncio.ensure_future(predict(client, [f"req{r}-t{i}-xx" for i in range(3)]))
        for r in range(8)
    ]
    await until(lambda: sum(len(c) for c in model.calls) >= 9)
    model.gate.set()
    statuses = [status for status, _, _ in await asyncio.gather(*requests)]
    assert statuses.count(200) == 3 and statuses.count(429) == 5  # 3 x 37 fit in 120
    assert sum(len(call) for call in model.calls) == 9


async def test_cache_hits_are_refunded_and_failed_work_is_charged(
    make_client: Any, model: FakeModel
) -> None:
    client = await make_client(
        rate_limit_per_second=0.01, rate_limit_burst=1000, request_timeout_seconds=0.2
    )
    status, headers, _ = await predict(client, ["paid-xxxxx"])  # 1 + 12
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "987")
    status, headers, _ = await predict(client, ["paid-xxxxx"])  # a hit: 1
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "986")
    model.gate = asyncio.Event()
    status, headers, _ = await predict(client, ["unpaid-xxx"])  # sent, then past the deadline
    assert (status, headers["X-RateLimit-Remaining"]) == (503, "973")  # an error says it too
    model.gate.set()
    status, headers, _ = await predict(client, ["paid-xxxxx"])
    assert headers["X-RateLimit-Remaining"] == "972"  # 986 - (1 + 12) - 1
    async with client.get("/model") as response:  # one unit
        assert (response.status, response.headers["X-RateLimit-Remaining"]) == (200, "971")


async def test_refused_api_keys_count_against_the_address(make_client: Any) -> None:
    client = await make_client(api_keys="right", rate_limit_per_second=0.01, rate_limit_burst=3)
    wrong = {"Authorization": "Bearer wrong"}
    statuses = [(await predict(client, ["x"], headers=wrong))[0] for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


async def test_the_model_refresh_loop_outlives_an_unexpected_error(
    make_client: Any, model: FakeModel
) -> None:
    model.identity_failures = 2
    client = await make_client(model_refresh_seconds=0.02)
    served = client.app[SERVED]
    await until(lambda: served.tracker.current is not None)  # learned after the errors
    assert model.identity_failures == 0


async def test_request_bodies_held_at_once_are_bounded(make_client: Any, model: FakeModel) -> None:
    """Two bodies of ~4,000 decoded bytes held (their requests wait on the
    model) fill the budget for large bodies: a third is refused before it is
    read, while a small request still passes; all of it is given back."""
    client = await make_client(max_body_bytes=4096, max_body_bytes_in_flight=10_000)
    model.gate = asyncio.Event()
    big = [gzip.compress(json.dumps({"text": [f"{n} " + "x" * 3900]}).encode()) for n in range(3)]
    gzipped = {"Content-Encoding": "gzip"}
    held = [asyncio.ensure_future(predict(client, [], data=b, headers=gzipped)) for b in big[:2]]
    bodies = client.app[BODIES]
    await until(lambda: bodies.held > 7800)
    status, _, body = await predict(client, [], data=big[2], headers=gzipped)
    assert (status, body["error_type"]) == (429, "overloaded")
    assert "request bodies" in body["error"]
    small_done = asyncio.ensure_future(predict(client, ["small"]))
    await asyncio.sleep(0.05)
    assert not small_done.done()  # admitted past the body budget: waits for the model
    model.gate.set()
    assert [status for status, _, _ in await asyncio.gather(*held, small_done)] == [200] * 3
    assert bodies.held == 0


async def test_readiness_is_one_check_a_second_and_never_closes_the_redis_breaker(
    make_client: Any, model: FakeModel
) -> None:
    client = await make_client()
    checks: list[float] = []
    ready = model.model_ready

    async def counted(max_wait: float) -> bool:
        checks.append(max_wait)
        return await ready(max_wait)

    model.model_ready = counted  # type: ignore[method-assign]
    for _ in range(20):
        async with client.get("/health/ready") as response:
            assert response.status == 200
    assert len(checks) == 1  # a probe storm asks Triton once a second
    served = client.app[SERVED]
    served.cache.breaker.trip(ConnectionError("redis failing its calls"))
    served.readiness = None  # the next check runs now
    async with client.get("/health/ready") as response:
        assert (await response.json())["redis"] == "degraded"
    assert served.cache.breaker.open  # a PING that answers does not close it


async def test_rate_limit_buckets_can_live_in_a_redis_of_their_own(
    aiohttp_client: AiohttpClient, model: FakeModel
) -> None:
    """RATE_LIMIT_REDIS_URL: buckets there, cache entries in REDIS_URL's Redis."""
    redises: dict[str, FakeAsyncRedis] = {}

    @asynccontextmanager
    async def open_backend(s: Settings, metrics: Metrics) -> AsyncIterator[Backend]:
        yield model

    settings = Settings(
        redis_url="redis://cache",
        rate_limit_redis_url="redis://buckets",
        rate_limit_per_second=1,
        model_refresh_seconds=3600,
    )
    app = create_app(
        settings, open_backend, lambda s: redises.setdefault(s.redis_url, FakeAsyncRedis())
    )
    client: TestClient = await aiohttp_client(app)
    status, headers, _ = await predict(client, ["kept apart"])
    assert (status, "X-RateLimit-Remaining" in headers) == (200, True)
    cache_keys = await redises["redis://cache"].keys("*")
    bucket_keys = await redises["redis://buckets"].keys("*")
    assert cache_keys and all(b":ratelimit:" not in key for key in cache_keys)
    assert bucket_keys and all(b":ratelimit:" in key for key in bucket_keys)


async def test_a_text_shared_with_a_request_too_large_is_computed_by_the_other(
    make_client: Any, model: FakeModel
) -> None:
    """A's 413 is about A's size, not its texts: B, waiting for a text A had
    claimed, computes it itself instead of failing with A's 413."""
    client = await make_client(request_timeout_seconds=1.0)
    model.seconds_per_unit = 1e-3  # learn a capacity of about 1,000 units/s
    await asyncio.gather(*(predict(client, [f"warm {r} {i}" for i in range(6)]) for r in range(4)))
    predictor = client.app[PREDICTOR]
    assert predictor.admission.throughput.capacity
    lookups = asyncio.Event()
    get_many = predictor.cache.get_many

    async def slow_lookup(*args: Any) -> Any:
        await lookups.wait()  # A and B both claim or wait before A learns its size
        return await get_many(*args)

    predictor.cache.get_many = slow_lookup  # type: ignore[method-assign]
    big = asyncio.ensure_future(
        predict(client, ["shared"] + [f"{i} " + "x" * 200 for i in range(20)])
    )
    await asyncio.sleep(0.05)
    small = asyncio.ensure_future(predict(client, ["shared"]))
    await asyncio.sleep(0.05)
    lookups.set()
    (big_status, _, _), (small_status, _, body) = await asyncio.gather(big, small)
    assert big_status == 413
    assert small_status == 200, body


async def post_long(client: TestClient, texts: list[str], mode: str) -> tuple[int, Any, Any]:
    return await predict(client, [], data=json.dumps({"text": texts, "long_texts": mode}))


async def test_long_texts_are_named_refused_or_read_in_windows(
    make_client: Any, model: FakeModel
) -> None:
    model.tokenizer_json = bert_like_json()  # "film" one token: 600 of them are too long
    client = await make_client(rate_limit_per_second=0.01, rate_limit_burst=100_000)
    await until(lambda: client.app[SERVED].text_costs().tokenizer is not None)
    long = "film " * 600
    status, headers, _ = await predict(client, ["i love you", long, long])
    assert (status, headers["X-Truncated"]) == (200, "1, 2")
    assert client.app[METRICS].truncated_texts._value.get() == 2
    status, headers, _ = await post_long(client, ["i love you", long], "reject")
    assert (status, "X-RateLimit-Remaining" in headers) == (413, True)  # charged, and says so
    model.calls.clear()
    status, headers, body = await post_long(client, ["i love you", long], "windows")
    assert status == 200 and "X-Truncated" not in headers and len(body["predictions"]) == 2
    windows = [t for call in model.calls for t in call if t != "i love you"]
    assert [len(w.split()) for w in windows] == [502, 162]  # 600 tokens, 64 shared
    first, second = model.score(windows[0]), model.score(windows[1])
    expected = 1 / (
        1 + ((1 - first) / first) ** (502 / 600) * ((1 - second) / second) ** (98 / 600)
    )
    assert positives(body)[1] == pytest.approx(expected)  # logits averaged, each token once


async def test_before_the_tokenizer_long_texts_are_unknown_not_guessed(
    make_client: Any, model: FakeModel
) -> None:
    client = await make_client()  # the model sends no tokenizer
    status, headers, _ = await predict(client, ["film " * 600])
    assert (status, headers["X-Truncated"]) == (200, "unknown")
    assert (await post_long(client, ["film " * 600], "windows"))[0] == 503
    assert "X-Truncated" not in (await predict(client, ["film " * 30]))[1]  # short: known


@pytest.fixture
def traced_client(aiohttp_client: AiohttpClient, model: FakeModel) -> Any:
    """A proxy whose spans go to an in-memory exporter, as they end."""
    exporter = InMemorySpanExporter()

    @asynccontextmanager
    async def open_backend(s: Settings, metrics: Metrics) -> AsyncIterator[Backend]:
        yield model

    @asynccontextmanager
    async def open_tracing() -> AsyncIterator[Tracing]:
        yield Tracing(SimpleSpanProcessor(exporter))

    async def make() -> tuple[TestClient, InMemorySpanExporter]:
        settings = Settings(model_refresh_seconds=3600)
        redis = FakeAsyncRedis()
        app = create_app(settings, open_backend, lambda s: redis, open_tracing)
        return await aiohttp_client(app), exporter

    return make


async def test_a_request_waiting_on_anothers_text_has_a_single_flight_span(
    traced_client: Any, model: FakeModel
) -> None:
    client, exporter = await traced_client()
    model.gate = asyncio.Event()
    first = asyncio.create_task(predict(client, ["same"]))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(predict(client, ["same", "other"]))
    await asyncio.sleep(0.05)
    model.gate.set()
    (_, h1, _), (_, h2, _) = await asyncio.gather(first, second)
    spans = exporter.get_finished_spans()
    waiting = [s for s in spans if s.context.trace_id == int(h2["X-Trace-Id"], 16)]
    request = next(s for s in waiting if s.name == "POST /predict")
    wait = next(s for s in waiting if s.name == "single-flight wait")
    assert wait.parent is not None and wait.parent.span_id == request.context.span_id
    computing = [s for s in spans if s.context.trace_id == int(h1["X-Trace-Id"], 16)]
    assert "single-flight wait" not in {s.name for s in computing}
    assert "triton infer" in {s.name for s in computing}


async def test_a_callers_traceparent_continues_its_trace(traced_client: Any) -> None:
    client, exporter = await traced_client()
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    _, headers, _ = await predict(client, ["a"], headers={"traceparent": caller})
    assert headers["X-Trace-Id"] == "0af7651916cd43dd8448eb211c80319c"
    request = next(s for s in exporter.get_finished_spans() if s.name == "POST /predict")
    assert request.parent is not None and request.parent.span_id == 0xB7AD6B7169203331


async def test_without_tracing_answers_name_no_trace(make_client: Any) -> None:
    client = await make_client()
    status, headers, _ = await predict(client, ["a"])
    assert status == 200 and "X-Trace-Id" not in headers


async def test_a_sampled_request_keeps_the_trace_id_it_was_sampled_by(
    traced_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sampling is decided before the span exists (an unsampled request costs
    no span): the span must then carry the very trace id the ratio accepted."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    client, exporter = await traced_client()
    ids = [h.get("X-Trace-Id") for _, h, _ in [await predict(client, ["a"]) for _ in range(400)]]
    sampled = [int(i, 16) for i in ids if i is not None]
    assert 60 <= len(sampled) <= 140  # binomial(400, 0.25): mean 100, sd 8.7
    bound = TraceIdRatioBased.get_bound_for_rate(0.25)
    assert all(i & TraceIdRatioBased.TRACE_ID_LIMIT < bound for i in sampled)
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert sorted(s.context.trace_id for s in roots) == sorted(sampled)
