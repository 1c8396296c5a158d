"""The shapes of the API's JSON as pydantic models; /openapi.json's schemas
are generated from them (openapi.py). Parsing stays in contract.py, whose
errors name the offending text; these models describe, they do not parse."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from pydantic.json_schema import models_json_schema

from cache_proxy.settings import Settings

REF = "#/components/schemas/{model}"


class Error(BaseModel):
    """Every error answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "error": 'missing field "text": a list of strings',
                "error_type": "validation",
            }
        }
    )
    error: str = Field(description="What went wrong, for people.")
    error_type: str = Field(description="Stable, for programs.")


class Score(BaseModel):
    label: str = Field(examples=["POSITIVE"])
    score: float = Field(ge=0, le=1)


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "predictions": [
                    [{"label": "NEGATIVE", "score": 0.0036}, {"label": "POSITIVE", "score": 0.9964}]
                ]
            }
        }
    )
    predictions: list[list[Score]] = Field(
        description="One list of label scores per input text, in input order."
    )


class ModelInfo(BaseModel):
    """Identity of the served model; `fingerprint` keys the cache."""

    model_config = ConfigDict(extra="allow")
    fingerprint: str
    labels: list[str]
    release: str | None = None
    name: str | None = None
    source: str | None = None
    revision: str | None = None
    standin: bool | None = None
    precision: str | None = None
    engine: str | None = Field(default=None, description="the inference engine that scores")


class Model(BaseModel):
    model: ModelInfo


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not_ready", "draining"]
    triton: Literal["ready", "unavailable"] | None = None
    redis: Literal["ok", "degraded", "disabled"] | None = None
    costs: Literal["tokens", "characters"] | None = Field(
        default=None,
        description="What admission and rate limits count: the model's tokens once its "
        "tokenizer is loaded, else the character bound",
    )
    model: ModelInfo | None = None


class Alive(BaseModel):
    status: Literal["alive"]


RESPONSES: tuple[type[BaseModel], ...] = (Error, PredictResponse, Model, Readiness, Alive)


def components() -> dict[str, Any]:
    """Every response schema (and what they use), keyed by model name."""
    _, top = models_json_schema([(m, "serialization") for m in RESPONSES], ref_template=REF)
    schemas: dict[str, Any] = top["$defs"]
    return schemas


LongTextsMode = Literal["truncate", "reject", "windows"]  # contract.LongTexts (a test checks)
LONG_TEXTS = (
    "What to do with a text over 512 tokens ([CLS] and [SEP] included), of which the "
    "model reads the first 512: `truncate` (the default) reads those and names the text "
    "in the `X-Truncated` header; `reject` answers 413 naming the texts, before any work; "
    "`windows` reads the whole text in windows of at most 502 tokens sharing "
    "WINDOW_OVERLAP_TOKENS, each scored as a text of its own (and admitted and cached as "
    "one), and answers the softmax of their logits averaged with each token counted once "
    "(at most MAX_WINDOWS windows a text, else 413)."
)


def predict_request(settings: Settings) -> dict[str, Any]:
    """`{"text": [...], "long_texts": ...}` with this deployment's limits."""
    text = Annotated[str, StringConstraints(max_length=settings.max_text_chars)]
    request = create_model(
        "PredictRequest",
        text=(list[text], Field(max_length=settings.max_texts)),
        long_texts=(
            LongTextsMode,
            Field(default="truncate", description=LONG_TEXTS),
        ),
    )
    schema: dict[str, Any] = request.model_json_schema(ref_template=REF)
    return schema
