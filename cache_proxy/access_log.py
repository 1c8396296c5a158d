"""Access log without the noise of probes and scrapes."""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_log import AccessLogger

QUIET_PATHS = frozenset({"/health", "/health/ready", "/metrics"})


class QuietAccessLogger(AccessLogger):
    """Logs every request except successful health checks and metric scrapes."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path in QUIET_PATHS and response.status < 400:
            return
        super().log(request, response, time)
