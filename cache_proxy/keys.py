"""Typed keys for what the app and a request hold."""

from aiohttp import web

from cache_proxy.bodies import BodyBudget
from cache_proxy.drain import Drain
from cache_proxy.metrics import Metrics
from cache_proxy.predictor import Predictor
from cache_proxy.ratelimit import Bill, RateLimiter
from cache_proxy.served import ServedModel
from cache_proxy.settings import Settings
from cache_proxy.tracing import Tracing

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
DRAIN = web.AppKey("drain", Drain)
PREDICTOR = web.AppKey("predictor", Predictor)
SERVED = web.AppKey("served", ServedModel)
LIMITER = web.AppKey("limiter", RateLimiter)
BODIES = web.AppKey("bodies", BodyBudget)
TRACING = web.AppKey("tracing", Tracing)  # samples nothing when tracing is off

CLIENT = web.RequestKey("client", str)  # fair-share and rate-limit identity
BILL = web.RequestKey("bill", Bill)  # the route's rate-limit charge, for X-RateLimit-*
