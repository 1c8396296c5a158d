"""One view of the served model across proxy replicas, through Redis.

Each proxy follows the model from Triton's own answers (tracker.ModelTracker),
so during a rolling update one proxy may meet the new release seconds before
another whose pooled connections still reach old replicas. The first proxy to
move to a new release writes it here, with the releases it retired; every
proxy reads this record once per MODEL_REFRESH_SECONDS and moves too, so all
proxies stop serving the old release within that interval of the first. The
record expires VIEW_SECONDS after it was written.

A proxy follows the record only away from a release the record retired (not
before it has met any release itself), and never to a release it retired
itself, so the record cannot drag a proxy back; a proxy already serving the
record's release refuses the releases it lists as retired (one that met the
new release first learns what it replaced). Rollbacks are written too, for
proxies that start later. The record is per Triton address and model, so
deployments sharing one Redis never follow each other. Without Redis each
proxy follows its own answers, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# A record older than this is gone: a proxy started later follows its own
# answers, and a stale record cannot send new proxies to a release long replaced.
VIEW_SECONDS = 600


def view_key(triton_url: str, model: str) -> str:
    """The record of the proxies in front of one Triton address and model."""
    return f"sst2:serving:{triton_url}:{model}"


@dataclass(frozen=True)
class View:
    """The release the proxies serve (its MODEL_INFO) and those they retired."""

    serving: dict[str, Any]
    retired: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({"serving": self.serving, "retired": list(self.retired)})

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> View | None:
        """The record, or None if absent or unreadable (another version wrote it)."""
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            serving, retired = record["serving"], record["retired"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(serving, dict) or not isinstance(retired, list):
            return None
        return cls(serving, tuple(str(r) for r in retired))
