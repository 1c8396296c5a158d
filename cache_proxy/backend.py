"""Triton calls: classify texts, read the served model's identity.

Every inference asks for MODEL_INFO too, so each result carries the
fingerprint of the model that computed it; the cache is written under that
fingerprint, never under a stale one.

Triton may sit behind a load balancer (a Kubernetes Service): a pooled
connection stays with one replica, a new connection may reach another
(channels.py keeps only the connections whose replica answered). A
replica that is draining closes its connections or refuses new work; such a
call is retried once on a new connection (`fresh`), which the balancer sends
to a replica still serving. During a rolling update a call names the releases
the proxy retired (`retired`); a replica still serving one declines it before
computing (ReleaseDeclined), and it is asked again likewise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

import aiohttp
import numpy as np
from numpy.typing import NDArray
from tritonclient.http import InferInput, InferRequestedOutput, InferResult
from tritonclient.utils import InferenceServerException

from cache_proxy.channels import Channels, Lease
from cache_proxy.errors import ApiError, BackendFailed, BackendUnavailable, Overloaded
from cache_proxy.metrics import Metrics
from cache_proxy.tracing import sampled_context_headers
from cache_proxy.tracker import ModelIdentity

log = logging.getLogger(__name__)
Outputs = tuple[str, ...]  # the model outputs a call asks for


class ReplicaUnavailable(BackendUnavailable):
    """This connection's replica is gone or refuses new work (a draining
    Triton closed the connection, or no longer serves the model): the call
    may succeed on a new connection, which the balancer sends elsewhere."""


class ReleaseDeclined(ReplicaUnavailable):
    """This connection's replica serves a release the caller retired and
    declined the call before computing (the model's identity.DECLINED): ask
    again on a new connection, which may reach a new replica."""


RETIRED_PARAMETER = "retired_releases"  # the model's identity.RETIRED_PARAMETER
DECLINED = "release retired by the caller"  # the model's identity.DECLINED


def map_triton_error(exc: InferenceServerException) -> ApiError:
    """Triton's error -> the proxy's taxonomy (its queue policy's rejections
    429, also when the policy's timeout is the proxy's own deadline, which a
    call passes on; other timeouts 503). Triton's own text stays in the
    proxy's log, never in a client's answer. A declined call is no error: a
    rolling update (counted in proxy_model_calls_declined_total); nor is a
    queue policy's rejection: shedding (proxy_rejections_total, model_queue)."""
    message = exc.message() or str(exc)
    lowered = message.lower()
    if DECLINED in lowered:
        log.debug("triton: %s", message)
        return ReleaseDeclined("the replica serves a retired release")
    if "queue" in lowered and ("full" in lowered or "maximum" in lowered or "size" in lowered):
        log.debug("triton: %s", message)  # shed, counted (proxy_rejections_total)
        return Overloaded("the model's queue is full")
    if "request timeout expired" in lowered:  # waited in the queue past the policy's timeout
        log.debug("triton: %s", message)
        return Overloaded("the model's queue is too slow")
    log.warning("triton error: %s", message)
    if "timeout" in lowered or "timed out" in lowered:
        return BackendUnavailable("the model timed out")
    if "unavailable" in lowered or "not ready" in lowered or "not found" in lowered:
        return ReplicaUnavailable("the model is unavailable")
    return BackendFailed("the model failed to answer; see the proxy log")


class Backend(Protocol):
    """What the Predictor needs of a model server (TritonBackend; a fake in tests)."""

    async def classify(
        self,
        texts: Sequence[str],
        time_budget: float,
        *,
        fresh: bool = False,
        retired: Sequence[str] = (),
    ) -> tuple[NDArray[np.float32], ModelIdentity]: ...

    async def identity(
        self, time_budget: float, *, fresh: bool = False, retired: Sequence[str] = ()
    ) -> ModelIdentity: ...

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
        self.channels = Channels(url, limit=200)  # keep-alive, each with its replica
        self.model = model
        self.metrics = metrics
        self.outage = Outage()

    async def close(self) -> None:
        await self.channels.close()

    async def classify(
        self,
        texts: Sequence[str],
        time_budget: float,
        *,
        fresh: bool = False,
        retired: Sequence[str] = (),
    ) -> tuple[NDArray[np.float32], ModelIdentity]:
        """Scores [len(texts), labels] (at most the model's max_batch_size texts) and the
        identity of the model that made them. `fresh`: on a new connection;
        `retired`: releases whose replicas are to decline the call (ReleaseDeclined)."""
        outputs = ("MODEL_INFO", "PROBABILITIES")
        result, identity = await self._infer(texts, time_budget, outputs, fresh, retired)
        return result.as_numpy("PROBABILITIES"), identity

    async def identity(
        self, time_budget: float, *, fresh: bool = False, retired: Sequence[str] = ()
    ) -> ModelIdentity:
        """Ask the model who it is (a one-row request for MODEL_INFO only);
        `fresh`: on a new connection; `retired`: as `classify`'s (a replica
        serving one declines, and its connection is not kept)."""
        _, identity = await self._infer([""], time_budget, ("MODEL_INFO",), fresh, retired)
        return identity

    async def tokenizer(self, time_budget: float) -> tuple[str, ModelIdentity]:
        """The served model's tokenizer.json and identity (no forward pass)."""
        result, identity = await self._infer([""], time_budget, ("MODEL_INFO", "TOKENIZER"))
        raw = result.as_numpy("TOKENIZER")
        if raw is None or not raw[0, 0]:
            raise BackendFailed("the model sent no tokenizer")
        return bytes(raw[0, 0]).decode("utf-8"), identity

    async def model_ready(self, max_wait: float) -> bool:
        """Triton says the model is ready within `max_wait` (a stalled Triton
        must not stall readiness probes)."""
        try:
            async with asyncio.timeout(max_wait), self.channels.lease() as lease:
                lease.keep = bool(await lease.client.is_model_ready(self.model))
                return lease.keep
        except (TimeoutError, InferenceServerException, aiohttp.ClientError, OSError):
            return False

    async def _infer(
        self,
        texts: Sequence[str],
        time_budget: float,
        outputs: Outputs,
        fresh: bool = False,
        retired: Sequence[str] = (),
    ) -> tuple[InferResult, ModelIdentity]:
        deadline = time.monotonic() + time_budget
        try:
            return await self._infer_once(texts, time_budget, outputs, fresh, retired)
        except ApiError as error:
            left = deadline - time.monotonic()
            if fresh or not isinstance(error, ReplicaUnavailable) or left <= 0:
                raise
            if not isinstance(error, ReleaseDeclined):
                self.metrics.triton_errors.labels("retried_elsewhere").inc()
            return await self._infer_once(texts, left, outputs, True, retired)

    async def _infer_once(
        self,
        texts: Sequence[str],
        time_budget: float,
        outputs: Outputs,
        fresh: bool,
        retired: Sequence[str],
    ) -> tuple[InferResult, ModelIdentity]:
        """One call, on a pooled connection or a new one (`fresh`); a wait for
        a free connection counts against `time_budget`."""
        deadline = time.monotonic() + time_budget
        try:
            async with self.channels.lease(fresh, wait=time_budget) as lease:
                left = deadline - time.monotonic()
                return await self._call(lease, texts, left, outputs, retired)
        except TimeoutError:  # no connection free in time (_call's own: BackendUnavailable)
            self.metrics.triton_errors.labels("deadline").inc()
            raise BackendUnavailable(
                f"no connection to the model free within {time_budget:.2f}s"
            ) from None

    async def _call(
        self,
        lease: Lease,
        texts: Sequence[str],
        time_budget: float,
        outputs: Outputs,
        retired: Sequence[str] = (),
    ) -> tuple[InferResult, ModelIdentity]:
        """The call, and whether its connection is kept: its replica answered,
        and not for a release the caller retired (channels.py)."""
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        tensor = InferInput("TEXT", list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        requested = [InferRequestedOutput(name, binary_data=True) for name in outputs]
        started = time.monotonic()
        try:
            async with asyncio.timeout(time_budget):
                result: InferResult = await lease.client.infer(
                    self.model,
                    [tensor],
                    outputs=requested,
                    timeout=int(time_budget * 1e6),
                    headers=sampled_context_headers(),  # Triton's spans join the trace
                    parameters={RETIRED_PARAMETER: ",".join(retired)} if retired else None,
                )
        except TimeoutError:
            self.metrics.triton_errors.labels("deadline").inc()
            raise BackendUnavailable(
                f"no answer from the model within {time_budget:.2f}s",
            ) from None
        except InferenceServerException as exc:
            error = map_triton_error(exc)
            lease.keep = not isinstance(error, ReplicaUnavailable)
            if isinstance(error, ReleaseDeclined):
                self.metrics.model_calls_declined.inc()
            elif not isinstance(error, Overloaded):  # shed: counted by the caller, with its cost
                self.metrics.triton_errors.labels(error.error_type).inc()
            raise error from None
        except (aiohttp.ClientError, OSError) as exc:
            self.metrics.triton_errors.labels("unreachable").inc()
            self.outage.failed(exc)
            raise ReplicaUnavailable("the model server is unreachable") from None
        finally:
            self.metrics.triton_latency.observe(time.monotonic() - started)
        self.outage.answered()
        identity = identify(result)
        lease.keep = identity.release not in retired
        return result, identity


def identify(result: InferResult) -> ModelIdentity:
    """The identity of the model that answered (its MODEL_INFO, first row)."""
    return ModelIdentity.from_json(result.as_numpy("MODEL_INFO")[0, 0])
