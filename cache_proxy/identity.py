"""Keep track of which model Triton serves (fingerprint for cache keys)."""

from __future__ import annotations

import logging

from aiohttp import web

from cache_proxy.backend import ModelIdentity
from cache_proxy.errors import ApiError, BackendUnavailable
from cache_proxy.keys import BACKEND, TRACKER

log = logging.getLogger(__name__)
IDENTITY_TIMEOUT_SECONDS = 2.0


async def refresh_identity(app: web.Application) -> ModelIdentity | None:
    """Ask Triton now; keep the last known identity if it does not answer."""
    try:
        app[TRACKER].observe(await app[BACKEND].identity(IDENTITY_TIMEOUT_SECONDS))
    except ApiError as exc:
        log.debug("model identity not available: %s", exc.message)
    return app[TRACKER].current


async def ensure_identity(app: web.Application) -> ModelIdentity:
    """The known identity, asking Triton if there is none yet."""
    identity = app[TRACKER].current or await refresh_identity(app)
    if identity is None:
        raise BackendUnavailable("the model's identity is not known yet: Triton unreachable")
    return identity
