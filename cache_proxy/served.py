"""The served model: which release the proxy serves, what texts cost under
its tokenizer, and whether it is ready, kept current by `keep_current`.

Triton's answers carry the identity of the model that made them (MODEL_INFO);
the Predictor hands each to `observe`, which follows the release through
rolling updates (tracker.ModelTracker) and shares a move with the other
proxies (fleet.py). When no request comes, `keep_current` polls Triton once
per interval, follows the other proxies' moves, and fetches a new release's
tokenizer, so admission counts tokens rather than characters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from cache_proxy.backend import Backend
from cache_proxy.cache import PredictionCache
from cache_proxy.costs import TextCosts
from cache_proxy.errors import ApiError, BackendUnavailable
from cache_proxy.fleet import VIEW_SECONDS, View
from cache_proxy.tracker import ModelIdentity, ModelTracker

log = logging.getLogger(__name__)
IDENTITY_TIMEOUT_SECONDS = 2.0
TOKENIZER_RETRY_SECONDS = 30.0  # after a failed tokenizer fetch
READY_MAX_AGE_SECONDS = 1.0  # readiness answers from a check at most this old
CHARACTER_BOUND = TextCosts()  # what texts cost without the served model's tokenizer


class ServedModel:
    def __init__(
        self,
        backend: Backend,
        cache: PredictionCache,
        tracker: ModelTracker | None = None,
        view_key: str = "sst2:serving",
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.tracker = tracker or ModelTracker()
        self.view_key = view_key  # where the proxies share the release they serve (fleet.py)
        self.costs = CHARACTER_BOUND  # replaced by the served model's tokenizer (load_tokenizer)
        self.tokenizer_failed_at = float("-inf")
        self.unpublished: View | None = None  # a move not written yet (the latest wins)
        self.publisher: asyncio.Task[None] | None = None
        self.readiness: tuple[float, asyncio.Task[dict[str, Any]]] | None = None

    # The request path.

    def text_costs(self) -> TextCosts:
        """Token counts with the current model's tokenizer, else the character bound."""
        current = self.tracker.current
        if current is not None and current.release == self.costs.release:
            return self.costs
        return CHARACTER_BOUND

    def accepted(self) -> list[ModelIdentity]:
        """Where the cache is read: the current release's fingerprints (tracker.accepted)."""
        return self.tracker.accepted()

    def observe(self, identity: ModelIdentity, *, poll: bool = False) -> bool:
        """tracker.observe; a move to another release is written for the other
        proxies in the background (a slow Redis never holds an answer, or the
        admission budget it holds), one write at a time, the latest move last."""
        accepted = self.tracker.observe(identity, counted=not poll)
        if self.tracker.moved:
            self.tracker.moved = False
            self.unpublished = View(identity.info, tuple(self.tracker.retired))
            if self.publisher is None or self.publisher.done():
                self.publisher = asyncio.create_task(self._publish())
        return accepted

    async def _publish(self) -> None:
        while self.unpublished is not None:
            view, self.unpublished = self.unpublished, None
            await self.cache.set_record(self.view_key, view.to_json(), VIEW_SECONDS)

    async def published(self) -> None:
        """Until the moves observed so far are written (tests, shutdown)."""
        if self.publisher is not None:
            await asyncio.shield(self.publisher)

    async def identity(self) -> ModelIdentity:
        """The served model's identity, asking Triton if none is known yet."""
        identity = self.tracker.current or await self.refresh_identity()
        if identity is None:
            raise BackendUnavailable("the model's identity is not known yet: Triton unreachable")
        return identity

    async def ready(self, probe_seconds: float) -> dict[str, Any]:
        """Readiness, from a check at most READY_MAX_AGE_SECONDS old: probes and
        anyone else calling /health/ready share one check (it asks Triton and
        PINGs Redis), so calling it often costs nothing more."""
        now = time.monotonic()
        if self.readiness is None or (
            self.readiness[1].done() and now - self.readiness[0] > READY_MAX_AGE_SECONDS
        ):
            check = asyncio.ensure_future(self._check_ready(probe_seconds))
            check.add_done_callback(lambda task: task.cancelled() or task.exception())
            self.readiness = now, check
        return dict(await asyncio.shield(self.readiness[1]))

    async def _check_ready(self, probe_seconds: float) -> dict[str, Any]:
        """`ready` when Triton's model is ready; `degraded` when Triton does not
        answer but the identity is known (cached answers are still served);
        `not_ready` before the identity was ever learned."""
        triton_ready = await self.backend.model_ready(probe_seconds)
        identity = await self.identity() if triton_ready else self.tracker.current
        status = "ready" if triton_ready else "degraded"
        return {
            "status": status if identity else "not_ready",
            "triton": "ready" if triton_ready else "unavailable",
            "redis": await self.cache.ping(),
            "costs": "tokens" if self.text_costs().tokenizer is not None else "characters",
            "model": identity.info if identity else None,
        }

    # Kept current in the background.

    async def keep_current(self, interval: float) -> None:
        """Every `interval`: follow another proxy's move, poll Triton if no
        answer came within the interval (every inference refreshes the
        identity, so under traffic this sends nothing), fetch a new release's
        tokenizer. Runs until cancelled."""
        while True:
            try:
                await self.refresh(interval)
            except Exception:  # a bug must not end the loop: it would go stale silently
                log.exception("model refresh failed; trying again in %gs", interval)
            wait = interval - self.tracker.age()  # negative if Triton did not answer
            await asyncio.sleep(wait if wait > 0 else interval)

    async def refresh(self, interval: float) -> None:
        """One round of `keep_current`."""
        await self.follow_the_fleet()
        if self.tracker.age() >= interval:
            await self.refresh_identity()
        await self.load_tokenizer()

    async def follow_the_fleet(self) -> None:
        """Move to the release another proxy moved to first, if this one
        still serves a release that proxy retired; if this one serves the same
        release, refuse what it retired (cache_proxy.fleet). A proxy that met
        no release yet waits for its own."""
        if self.tracker.current is None:
            return
        view = View.from_json(await self.cache.get_record(self.view_key))
        if view is None:
            return
        try:
            identity = ModelIdentity.from_info(view.serving)
        except ValueError:
            return
        current = self.tracker.current  # again: it may have moved during the read
        if current is not None and current.release == identity.release:
            self.tracker.retire(view.retired)
        else:
            self.tracker.follow(identity, view.retired)

    async def refresh_identity(self) -> ModelIdentity | None:
        """Ask Triton now (again on a new connection if a retired release
        answered: the pooled one may sit on an old replica); keep the last
        known identity if it does not answer."""
        try:
            retired = self.tracker.refusing()  # declined, so no connection to them is kept
            answer = await self.backend.identity(IDENTITY_TIMEOUT_SECONDS, retired=retired)
            if not self.observe(answer, poll=True):
                answer = await self.backend.identity(
                    IDENTITY_TIMEOUT_SECONDS, fresh=True, retired=retired
                )
                self.observe(answer, poll=True)
        except ApiError as exc:
            log.debug("model identity not available: %s", exc.message)
        return self.tracker.current

    async def load_tokenizer(self) -> None:
        """Fetch the current model's tokenizer if it is not the one held
        (called every interval; after a failure, retried later)."""
        current = self.tracker.current  # one tokenizer per release (it is in the checkpoint)
        if current is None or current.release == self.costs.release:
            return
        if time.monotonic() - self.tokenizer_failed_at < TOKENIZER_RETRY_SECONDS:
            return
        try:
            raw, identity = await self.backend.tokenizer(IDENTITY_TIMEOUT_SECONDS)
            if identity.release != current.release:
                return  # another replica's model answered: ask again next time
            self.costs = await asyncio.to_thread(TextCosts.from_json, raw, identity.release)
        except (ApiError, ValueError) as exc:
            self.tokenizer_failed_at = time.monotonic()
            log.warning(
                "no tokenizer from model %s (%s): texts cost their character bound",
                current.release,
                exc.message if isinstance(exc, ApiError) else exc,
            )
            return
        log.info("costs: tokens counted with release %s's tokenizer", identity.release)
