"""`engine: auto`: choose the engine by a short measurement on this machine.

Each built engine scores the same probe texts. Torch fp32, the reference,
goes first, and its own batch drift (how far a text's scores move between
scored alone and among the probe batch) is this checkpoint's fp32 rounding
noise: 1e-8 to 1e-7 on a trained model, 2.5e-5 to 7e-5 on the random-weight
stand-in. Every threshold is a multiple of that noise (at least NOISE_FLOOR),
so one rule holds for every checkpoint. An engine qualifies when
  - its scores are batch-invariant: its batch drift is at most
    DRIFT_MULTIPLE x the noise and never over MAX_DRIFT (1e-4; not judged on
    a stand-in, whose noise is near it: Rule.max_drift), so cached
    answers are reproducible and no client can nudge another's score. Dynamic
    int8 (activation scales per batch) drifts 1e-3 to 0.3 and stays out;
  - it agrees with torch fp32. An fp32 engine computes the same function, so
    its scores may differ from torch's only by rounding: at most
    SAME_MULTIPLE x the noise (a larger multiple than drift: other kernels
    sum in another order throughout the network). An int8 engine changes the
    numbers by design: no probe label may differ, nor any probability by more
    than AGREEMENT (a proxy for "accuracy within 1 point of fp32"; `make
    bench-triton` measures held-out accuracy per engine). A stand-in's int8
    agreement is not judged: its random weights make int8's errors
    meaningless, and a trained checkpoint of the same shape is what it stands
    in for.
The fastest qualifying engine wins; if none qualifies, the reference.
The choice is cached per machine (CPU
model and flags, and any cap on the instruction sets the engines may use),
thread count, checkpoint, engine files and this model's code (how an engine
is fed changes its speed, and could change its invariance), so a restart
reuses it and an update measures again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from identity import code_digest

REFERENCE = "torch-fp32"
# fp32 rounding noise is never taken as smaller than this: a few float32 ulps
# of a probability (the reference may drift by exactly 0 on a small model).
NOISE_FLOOR = 1e-6
DRIFT_MULTIPLE, MAX_DRIFT = 4.0, 1e-4
# Other fp32 kernels sum in another order throughout the network, a few times
# the noise (make bench-triton's drift table); a broken conversion is off by
# orders of magnitude more.
SAME_MULTIPLE = 16.0
AGREEMENT = 0.05
# Environment variables that cap the instruction sets oneDNN (torch, OpenVINO),
# torch's own kernels and MKL use: with one set, the same CPU ranks engines
# differently. ONNX Runtime (MLAS) and torch's int8 kernels (fbgemm) ignore them.
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
            "MKL_ENABLE_INSTRUCTIONS")  # fmt: skip

# Probe texts: short to review-length, as traffic is. Scores only need to be
# comparable between engines, so any English text does.
PROBE_TEXTS = [
    "I love you!",
    "I hate you!",
    "a gorgeous, witty, seductive movie.",
    "the plot is nothing but boilerplate clichés from start to finish,",
    "an utterly charming and hilarious film that reminded me why I love going to the movies",
    "it's a bad sign when you're rooting for the villain to win, and the villain is boring",
    "The acting is uneven, the script wanders, and the ending arrives long after you have "
    "stopped caring about anyone on screen; still, the photography is lovely and one or two "
    "scenes in the middle hint at the far better film this might have been.",
    "Not bad.",
] * 4

Score = Callable[[Sequence[str]], NDArray[np.float32]]
# Speed is timed over the probe texts at once and in batches of 8: what the
# dynamic batcher forms under heavy load and under a few concurrent users.
# Engines rank differently by batch size (a Xeon with oneDNN capped at AVX2:
# OpenVINO fp32 3% faster than ONNX Runtime fp32 at 32, 20% slower at 8), and
# served batches are mostly small.
TIMED_BATCHES = (len(PROBE_TEXTS), 8)


@dataclass(frozen=True)
class Trial:
    engine: str
    sentences_per_second: float
    batch_drift: float  # max |score alone - score in the probe batch|
    max_difference: float  # max |score - torch fp32 score|
    labels_agree: bool

    @property
    def precision(self) -> str:
        return self.engine.rsplit("-", 1)[1]


@dataclass(frozen=True)
class Rule:
    """The thresholds for one checkpoint, from its reference's own noise.
    `standin`: random weights, whose scores are nobody's answers; judged
    for the engine a trained checkpoint of its shape would get (int8
    agreement and the drift cap are not judged)."""

    noise: float
    standin: bool = False

    @classmethod
    def of(cls, trials: Sequence[Trial], *, standin: bool = False) -> Rule:
        noise = max(reference(trials).batch_drift, NOISE_FLOOR)
        return cls(noise, standin)

    @property
    def max_drift(self) -> float:
        # MAX_DRIFT keeps real scores reproducible. A stand-in's own noise puts
        # 4x it near or over the cap (4 x 7e-5 with AVX2 kernels), where the cap
        # would judge its random weights rather than the engine, while a trained
        # checkpoint's 4x (under 1e-6) is far below it.
        multiple = DRIFT_MULTIPLE * self.noise
        return multiple if self.standin else min(multiple, MAX_DRIFT)

    @property
    def max_fp32_difference(self) -> float:
        return SAME_MULTIPLE * self.noise

    def invariant(self, trial: Trial) -> bool:
        return trial.batch_drift <= self.max_drift

    def agrees(self, trial: Trial) -> bool:
        if trial.precision == "fp32":
            return trial.max_difference <= self.max_fp32_difference
        if self.standin:
            return True
        return trial.labels_agree and trial.max_difference <= AGREEMENT

    def qualifies(self, trial: Trial) -> bool:
        return self.invariant(trial) and self.agrees(trial)


def trial(engine: str, score: Score, reference: NDArray[np.float32] | None,
          repeats: int = 3) -> Trial:  # fmt: skip
    """Measure one engine on PROBE_TEXTS (speed: the median of `repeats`
    passes over TIMED_BATCHES)."""
    batch = score(PROBE_TEXTS)
    distinct = list(dict.fromkeys(PROBE_TEXTS))
    alone = np.concatenate([score([text]) for text in distinct])
    first = [PROBE_TEXTS.index(text) for text in distinct]
    drift = float(np.abs(batch[first] - alone).max())
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for size in TIMED_BATCHES:
            for i in range(0, len(PROBE_TEXTS), size):
                score(PROBE_TEXTS[i : i + size])
        rates.append(len(TIMED_BATCHES) * len(PROBE_TEXTS) / (time.perf_counter() - started))
    ref = batch if reference is None else reference
    return Trial(
        engine=engine,
        sentences_per_second=float(np.median(rates)),
        batch_drift=drift,
        max_difference=float(np.abs(batch - ref).max()),
        labels_agree=bool((batch.argmax(1) == ref.argmax(1)).all()),
    )


def measure(names: Sequence[str], scorer: Callable[[str], Score]) -> list[Trial]:
    """A trial of each engine in `names` (loaded one at a time by `scorer`),
    torch fp32 first: the others are compared with it."""
    trials: list[Trial] = []
    reference = None
    for name in [REFERENCE, *(n for n in names if n != REFERENCE)]:
        score = scorer(name)
        trials.append(trial(name, score, reference))
        if reference is None:
            reference = score(PROBE_TEXTS)
    return trials


def best(trials: Sequence[Trial], rule: Rule) -> Trial:
    """The fastest qualifying trial; if none qualifies, the reference (its
    drift is over MAX_DRIFT: no engine is better)."""
    qualified = [t for t in trials if rule.qualifies(t)]
    if not qualified:
        return reference(trials)
    return max(qualified, key=lambda t: t.sentences_per_second)


def reference(trials: Sequence[Trial]) -> Trial:
    return next(t for t in trials if t.engine == REFERENCE)


def isa_caps() -> list[str]:
    """The ISA_CAPS set in this environment, as NAME=value."""
    return [f"{name}={os.environ[name]}" for name in ISA_CAPS if os.environ.get(name)]


def machine() -> str:
    """The CPU model name and feature flags, and the instruction-set caps set in
    the environment (what makes engines fast or slow)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return " | ".join([fields.get("model name", "unknown"), fields.get("flags", ""), *isa_caps()])


def cache_key(digests: dict[str, str], threads: int) -> str:
    """Per machine, thread count, checkpoint and engine files (name -> digest)
    and the model's code."""
    blob = json.dumps({"machine": machine(), "threads": threads, "digests": digests,
                       "code": code_digest()}, sort_keys=True)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_cached(path: Path) -> list[Trial] | None:
    try:
        return [Trial(**row) for row in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return None


def write_cached(path: Path, trials: Sequence[Trial]) -> None:
    """Best effort (a read-only filesystem only costs a re-measurement)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(t) for t in trials], indent=1))
        tmp.replace(path)
    except OSError:
        pass
