"""Which outputs a Triton request asks for, pure: only PROBABILITIES needs a
forward pass (the proxy's identity polls ask for MODEL_INFO, its tokenizer
fetch for TOKENIZER)."""

from __future__ import annotations

from collections.abc import Iterable


def wants_scores(requested: set[str]) -> bool:
    """Whether a request's outputs need a forward pass (MODEL_INFO and TOKENIZER do not)."""
    return "PROBABILITIES" in requested


def requested_outputs(names: Iterable[str]) -> set[str]:
    """The outputs to produce: those requested, else PROBABILITIES alone
    (MODEL_INFO only when asked for)."""
    return set(names) or {"PROBABILITIES"}
