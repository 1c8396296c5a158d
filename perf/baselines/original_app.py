"""The design this project replaces, rebuilt for side-by-side benchmarks.

As in ../shared/seed/original-project.md: FastAPI, a transformers
`text-classification` pipeline in the same process (CPU, all scores), a sync
`/predict` (FastAPI runs it in its thread pool) and a whole-request Redis cache
with a 60 s TTL (`fastapi_redis_cache`'s `cache_one_minute`, here as a few
lines: that package is unmaintained). One uvicorn process.

    BASELINE_CHECKPOINT=/path/to/checkpoint REDIS_URL=redis://127.0.0.1:6379/1 \\
        python -m uvicorn perf.baselines.original_app:app --port 8090
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import redis
from fastapi import FastAPI, Response
from pydantic import BaseModel
from transformers import pipeline

CACHE_TTL_SECONDS = 60
CHECKPOINT = os.environ["BASELINE_CHECKPOINT"]

classifier = pipeline(
    task="text-classification", model=CHECKPOINT, tokenizer=CHECKPOINT, device=-1, top_k=None
)
cache = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app = FastAPI()


class SentimentRequest(BaseModel):
    text: list[str]


class Sentiment(BaseModel):
    label: str
    score: float


class SentimentResponse(BaseModel):
    predictions: list[list[Sentiment]]


def cache_key(request: SentimentRequest) -> str:
    """The whole request is the key: the same texts in another order miss."""
    return "mlapi-cache:" + hashlib.sha256(request.model_dump_json().encode()).hexdigest()


@app.post("/predict", response_model=SentimentResponse)
def predict(sentiments: SentimentRequest, response: Response) -> Any:
    key = cache_key(sentiments)
    cached = cache.get(key)
    if cached is not None:
        response.headers["X-MLAPI-Cache"] = "Hit"
        return json.loads(cached)
    result = {"predictions": classifier(sentiments.text)}
    cache.setex(key, CACHE_TTL_SECONDS, json.dumps(result))
    response.headers["X-MLAPI-Cache"] = "Miss"
    return result


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}
