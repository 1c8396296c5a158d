"""Triton calls: classify texts, read the served model's identity.

Every inference asks for MODEL_INFO too, so each result carries the
fingerprint of the model that computed it; the cache is written under that
fingerprint, never under a stale one.

Triton may sit behind a load balancer (a Kubernetes Service): a pooled
connection stays with one replica, a new connection may reach another. A
replica that is draining closes its connections or refuses new work; such a
call is retried once on a new connection (`fresh`), which the balancer sends
to a replica still serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import numpy as np
from numpy.typing import NDArray
from prometheus_client import Counter
from tritonclient.http import InferInput, InferRequestedOutput, InferResult
from tritonclient.http.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cache_proxy.errors import ApiError, BackendFailed, BackendUnavailable, Overloaded
from cache_proxy.metrics import Metrics

log = logging.getLogger(__name__)
Outputs = tuple[str, ...]  # the model outputs a call asks for


class ReplicaUnavailable(BackendUnavailable):
    """This connection's replica is gone or refuses new work (a draining
    Triton closed the connection, or no longer serves the model): the call
    may succeed on a new connection, which the balancer sends elsewhere."""


@dataclass(frozen=True)
class ModelIdentity:
    """What Triton says it serves (the model's MODEL_INFO, built by the model's
    identity.py). `fingerprint` names the answers (it changes with anything
    that can change a score), so it keys the cache; `release` is the model
    apart from its numerics (the fingerprints of one release differ only in
    precision: fp32, or an int8 engine)."""

    fingerprint: str
    labels: tuple[str, ...]
    release: str = ""  # MODEL_INFO's release; none: a release of its own (the fingerprint)
    name: str = "unknown"
    source: str = "unknown"
    standin: bool = False
    warning: str | None = None
    info: dict[str, Any] = field(default_factory=dict, compare=False)  # all of it, for /model

    def __post_init__(self) -> None:
        if not self.release:
            object.__setattr__(self, "release", self.fingerprint)

    @classmethod
    def from_info(cls, info: object) -> ModelIdentity:
        if not isinstance(info, dict):
            raise ValueError(f"MODEL_INFO is not a JSON object: {str(info)[:200]}")
        fingerprint, labels = info.get("fingerprint"), info.get("labels")
        if not isinstance(fingerprint, str) or not isinstance(labels, list) or not labels:
            raise ValueError(f"MODEL_INFO lacks fingerprint/labels: {str(info)[:200]}")
        return cls(
            fingerprint=fingerprint,
            labels=tuple(str(label) for label in labels),
            release=str(info.get("release") or ""),
            name=str(info.get("name", "unknown")),
            source=str(info.get("source", "unknown")),
            standin=bool(info.get("standin", False)),
            warning=info.get("warning"),
            info=info,
        )

    @classmethod
    def from_json(cls, raw: bytes) -> ModelIdentity:
        return cls.from_info(json.loads(raw))


def map_triton_error(exc: InferenceServerException) -> ApiError:
    """Triton's error -> the proxy's taxonomy (queue full 429, timeouts 503).
    Triton's own text stays in the proxy's log, never in a client's answer."""
    message = exc.message() or str(exc)
    lowered = message.lower()
    log.warning("triton error: %s", message)
    if "queue" in lowered and ("full" in lowered or "maximum" in lowered or "size" in lowered):
        return Overloaded("the model's queue is full")
    if "timeout" in lowered or "timed out" in lowered:
        return BackendUnavailable("the model timed out")
    if "unavailable" in lowered or "not ready" in lowered or "not found" in lowered:
        return ReplicaUnavailable("the model is unavailable")
    return BackendFailed("the model failed to answer; see the proxy log")


class Backend(Protocol):
    """What the Predictor needs of a model server (TritonBackend; a fake in tests)."""

    async def classify(
        self, texts: Sequence[str], time_budget: float, *, fresh: bool = False
    ) -> tuple[NDArray[np.float32], ModelIdentity]: ...

    async def identity(self, time_budget: float, *, fresh: bool = False) -> ModelIdentity: ...

    async def tokenizer(self, time_budget: float) -> tuple[str, ModelIdentity]: ...

    async def model_ready(self, max_wait: float) -> bool: ...


class Outage:
    """Logs when Triton stops answering and when it answers again, not every
    failed call in between (each is counted in triton_errors_total): while
    Triton starts or is down, every request and identity poll fails."""

    def __init__(self) -> None:
        self.failures = 0
        self.since = 0.0

    def failed(self, exc: BaseException) -> None:
        if not self.failures:
            self.since = time.monotonic()
            log.warning("triton unreachable: %s (logged again once it answers)", exc)
        self.failures += 1

    def answered(self) -> None:
        if self.failures:
            log.warning(
                "triton answers again, after %.1fs and %d failed calls",
                time.monotonic() - self.since,
                self.failures,
            )
            self.failures = 0


class TritonBackend:
    def __init__(self, url: str, model: str, metrics: Metrics) -> None:
        self.url = url
        self.client = InferenceServerClient(url, conn_limit=200)  # pooled keep-alive
        self.model = model
        self.metrics = metrics
        self.outage = Outage()

    async def close(self) -> None:
        await self.client.close()

    async def classify(
        self, texts: Sequence[str], time_budget: float, *, fresh: bool = False
    ) -> tuple[NDArray[np.float32], ModelIdentity]:
        """Scores [len(texts), labels] (at most the model's max_batch_size texts) and the
        identity of the model that made them. `fresh`: on a new connection."""
        result = await self._infer(texts, time_budget, ("MODEL_INFO", "PROBABILITIES"), fresh)
        return result.as_numpy("PROBABILITIES"), identify(result)

    async def identity(self, time_budget: float, *, fresh: bool = False) -> ModelIdentity:
        """Ask the model who it is (a one-row request for MODEL_INFO only);
        `fresh`: on a new connection."""
        result = await self._infer([""], time_budget, ("MODEL_INFO",), fresh)
        return identify(result)

    async def tokenizer(self, time_budget: float) -> tuple[str, ModelIdentity]:
        """The served model's tokenizer.json and identity (no forward pass)."""
        result = await self._infer([""], time_budget, ("MODEL_INFO", "TOKENIZER"))
        raw = result.as_numpy("TOKENIZER")
        if raw is None or not raw[0, 0]:
            raise BackendFailed("the model sent no tokenizer")
        return bytes(raw[0, 0]).decode("utf-8"), identify(result)

    async def model_ready(self, max_wait: float) -> bool:
        """Triton says the model is ready within `max_wait` (a stalled Triton
        must not stall readiness probes)."""
        try:
            async with asyncio.timeout(max_wait):
                return bool(await self.client.is_model_ready(self.model))
        except (TimeoutError, InferenceServerException, aiohttp.ClientError, OSError):
            return False

    async def _infer(
        self, texts: Sequence[str], time_budget: float, outputs: Outputs, fresh: bool = False
    ) -> InferResult:
        deadline = time.monotonic() + time_budget
        try:
            return await self._infer_once(texts, time_budget, outputs, fresh)
        except ApiError as error:
            left = deadline - time.monotonic()
            if fresh or not isinstance(error, ReplicaUnavailable) or left <= 0:
                raise
            self.metrics.triton_errors.labels("retried_elsewhere").inc()
            return await self._infer_once(texts, left, outputs, fresh=True)

    async def _infer_once(
        self, texts: Sequence[str], time_budget: float, outputs: Outputs, fresh: bool
    ) -> InferResult:
        """One call, on the pool or on a new connection (closed after it)."""
        client = InferenceServerClient(self.url, conn_limit=1) if fresh else self.client
        try:
            return await self._call(client, texts, time_budget, outputs)
        finally:
            if fresh:
                await client.close()

    async def _call(
        self,
        client: InferenceServerClient,
        texts: Sequence[str],
        time_budget: float,
        outputs: Outputs,
    ) -> InferResult:
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        tensor = InferInput("TEXT", list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        requested = [InferRequestedOutput(name, binary_data=True) for name in outputs]
        started = time.monotonic()
        try:
            async with asyncio.timeout(time_budget):
                result: InferResult = await client.infer(
                    self.model, [tensor], outputs=requested, timeout=int(time_budget * 1e6)
                )
        except TimeoutError:
            self.metrics.triton_errors.labels("deadline").inc()
            raise BackendUnavailable(
                f"no answer from the model within {time_budget:.2f}s",
            ) from None
        except InferenceServerException as exc:
            error = map_triton_error(exc)
            self.metrics.triton_errors.labels(error.error_type).inc()
            raise error from None
        except (aiohttp.ClientError, OSError) as exc:
            self.metrics.triton_errors.labels("unreachable").inc()
            self.outage.failed(exc)
            raise ReplicaUnavailable("the model server is unreachable") from None
        finally:
            self.metrics.triton_latency.observe(time.monotonic() - started)
        self.outage.answered()
        return result


def identify(result: InferResult) -> ModelIdentity:
    """The identity of the model that answered (its MODEL_INFO, first row)."""
    return ModelIdentity.from_json(result.as_numpy("MODEL_INFO")[0, 0])


class ModelTracker:
    """The model being served, as Triton reports it; logs every change.

    Answers are named by fingerprint, and fingerprints group into releases
    (the checkpoint, model code and libraries; see the model's README). Within
    the current release every fingerprint is accepted: a fleet may serve fp32
    and int8 side by side, and each answer is cached, and looked up, under its
    own fingerprint (`accepted`).

    A new release is a rolling update. Its first answer makes it current and
    retires the previous release, whose later answers are refused (`observe`
    returns False, the caller asks again on a new connection), so the proxy
    never flips back to the old model. A retired release becomes current again
    only when the current one has not answered for `reinstate_after` seconds:
    a rollback.

    Proxy replicas share their moves (cache_proxy.fleet): `moved` is set when
    this tracker moved to another release, for the caller to publish; `follow`
    moves to a release another proxy met first, and `retire` takes the
    releases it retired.
    """

    def __init__(
        self,
        reinstate_after: float = 3.0,
        remember: int = 16,
        serving_window: float = 60.0,
        refused: Counter | None = None,
    ) -> None:
        self.current: ModelIdentity | None = None  # the current release's first answer
        self.observed_at = float("-inf")  # monotonic time the current release last answered
        self.serving: dict[str, tuple[ModelIdentity, float]] = {}  # its fingerprints, last answer
        self.retired: dict[str, float] = {}  # release -> when it was superseded
        self.reinstate_after = reinstate_after
        self.remember = remember
        self.serving_window = serving_window  # a fingerprint silent this long is not looked up
        self.refused = refused  # counts answers refused from a retired release
        self.moved = False  # moved forward to a new release since the caller last looked

    def age(self) -> float:
        """Seconds since the current release last answered (inference or poll)."""
        return time.monotonic() - self.observed_at

    def accepted(self) -> list[ModelIdentity]:
        """The current release's fingerprints that answered within
        `serving_window`, the current one first: where the cache is read."""
        if self.current is None:
            return []
        now = time.monotonic()
        others = [
            identity
            for fingerprint, (identity, seen) in self.serving.items()
            if fingerprint != self.current.fingerprint and now - seen < self.serving_window
        ]
        return [self.current, *others]

    def observe(self, identity: ModelIdentity, *, counted: bool = True) -> bool:
        """Record an answer's model; False if it came from a retired release
        (counted as a refused answer unless `counted` is False: a poll)."""
        now = time.monotonic()
        previous = self.current
        if previous is not None and previous.release == identity.release:
            self.observed_at = now
            if identity.fingerprint not in self.serving:
                log.info(
                    "also serving model %s's fingerprint %s (numerics %s) beside %s",
                    identity.name,
                    identity.fingerprint,
                    identity.info.get("numerics", "unknown"),
                    previous.fingerprint,
                )
            self.serving[identity.fingerprint] = (identity, now)
            return True
        if (
            previous is not None
            and identity.release in self.retired
            and self.age() < self.reinstate_after
        ):
            if self.refused is not None and counted:
                self.refused.inc()
            return False
        self.moved = previous is not None
        self._switch(identity, "")
        return True

    def follow(self, identity: ModelIdentity, retired: Sequence[str]) -> bool:
        """Move to `identity`'s release, which another proxy met first and
        which retired `retired`, if this tracker serves one of those and did
        not retire `identity`'s itself (it is then older here). True if it moved."""
        current = self.current
        if (
            current is None
            or current.release not in retired
            or identity.release in self.retired
            or current.release == identity.release
        ):
            return False
        self.retire(retired)
        self._switch(identity, " (met first by another proxy)")
        return True

    def retire(self, releases: Sequence[str]) -> None:
        """Releases other proxies retired: their answers are refused here too
        (a proxy that met the current release first learns what it replaced)."""
        for release in releases:
            if self.current is None or release != self.current.release:
                self.retired.setdefault(release, time.monotonic())

    def _switch(self, identity: ModelIdentity, how: str) -> None:
        """Make `identity` current; the previous release is retired."""
        now = time.monotonic()
        previous = self.current
        if previous is not None:
            self.retired[previous.release] = now
            self.retired.pop(identity.release, None)
            while len(self.retired) > self.remember:
                self.retired.pop(next(iter(self.retired)))
        self.observed_at = now
        self.current = identity
        self.serving = {identity.fingerprint: (identity, now)}
        log.info(
            "serving model %s (source=%s, fingerprint=%s, release=%s)%s%s",
            identity.name,
            identity.source,
            identity.fingerprint,
            identity.release,
            f", replacing release {previous.release}" if previous else "",
            how,
        )
        if identity.standin:
            log.warning("STAND-IN MODEL %s: %s", identity.name, identity.warning)
