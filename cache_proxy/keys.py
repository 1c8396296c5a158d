"""Typed keys for what the app holds."""

from aiohttp import web

from cache_proxy.backend import ModelTracker, TritonBackend
from cache_proxy.backpressure import InflightLimit
from cache_proxy.cache import PredictionCache
from cache_proxy.settings import Settings
from cache_proxy.singleflight import SingleFlight

SETTINGS = web.AppKey("settings", Settings)
CACHE = web.AppKey("cache", PredictionCache)
BACKEND = web.AppKey("backend", TritonBackend)
TRACKER = web.AppKey("tracker", ModelTracker)
FLIGHTS = web.AppKey("flights", SingleFlight)
LIMIT = web.AppKey("limit", InflightLimit)
