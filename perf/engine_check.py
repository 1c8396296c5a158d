"""Would a real checkpoint get the engine the stand-in got?

The benchmarks serve `standin-base`: DistilBERT-base compute with random
weights. Its engine speeds are a real checkpoint's, but its numbers are not
(its fp32 rounding noise is ~1000x a trained model's, and int8's errors on
random weights say nothing about accuracy). A real checkpoint of its shape
on this CPU would get `selection.best` over the stand-in's speeds and a
trained model's numbers (drift, distance from fp32, labels): that is the
engine a report must have measured. Two engines whose stand-in speeds are
within SAME_SPEED of each other are one choice (measurement noise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from checkout.repository import model_module

SAME_SPEED = 0.05
Rows = Sequence[dict[str, Any]]


def trials(rows: Rows) -> list[Any]:
    """selection.Trial records from JSON rows (extra keys ignored)."""
    selection = model_module("selection")
    names = {f.name for f in dataclasses.fields(selection.Trial)}
    return [selection.Trial(**{k: v for k, v in row.items() if k in names}) for row in rows]


def standin_choice(standin: Rows) -> str:
    """What `engine: auto` serves the stand-in (model.py's rule)."""
    selection = model_module("selection")
    measured = trials(standin)
    return str(selection.best(measured, selection.Rule.of(measured, standin=True)).engine)


def real_checkpoint_choice(standin: Rows, trained: Rows) -> str:
    """The stand-in's speeds with the trained model's numbers, judged as a
    trained checkpoint is."""
    selection = model_module("selection")
    speeds = {row["engine"]: row["sentences_per_second"] for row in standin}
    merged = [
        dataclasses.replace(t, sentences_per_second=speeds[t.engine])
        for t in trials(trained)
        if t.engine in speeds
    ]
    return str(selection.best(merged, selection.Rule.of(merged)).engine)


def verdict(standin: Rows, trained: Rows) -> dict[str, Any]:
    """Both choices and whether they are one (equal, or within SAME_SPEED)."""
    got, real = standin_choice(standin), real_checkpoint_choice(standin, trained)
    speeds = {row["engine"]: row["sentences_per_second"] for row in standin}
    gap = abs(speeds[got] - speeds[real]) / max(speeds[got], speeds[real])
    same = got == real or gap <= SAME_SPEED
    return {"standin": got, "real": real, "speed_gap": gap, "same": same}


def sentence(check: dict[str, Any]) -> str:
    """One line for a report."""
    if check["standin"] == check["real"]:
        return f"a trained checkpoint of its shape would get the same engine, {check['real']}."
    relation = (
        f"within {SAME_SPEED:.0%} of it in the stand-in's trials ({check['speed_gap']:.1%} apart): "
        "one choice"
        if check["same"]
        else f"**{check['speed_gap']:.0%} apart in the stand-in's trials: not the same**"
    )
    return f"a trained checkpoint of its shape would get {check['real']}, {relation}."
