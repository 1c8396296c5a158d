"""The served model as the proxy knows it: each answer's identity
(ModelIdentity, from the model's MODEL_INFO) and the release it follows
through rolling updates (ModelTracker). Pure: no I/O."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

log = logging.getLogger(__name__)


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

    def refusing(self) -> list[str]:
        """The releases whose answers `observe` refuses now: a call names them
        to Triton, whose replicas serving one decline it before computing."""
        if self.current is None or self.age() >= self.reinstate_after:
            return []
        return list(self.retired)

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
