"""`engine: auto`: choose the engine by a short measurement on this machine.

Each built engine scores the same probe texts. An engine qualifies when
  - its scores are batch-invariant: a text scored alone and among the probe
    batch differs by at most INVARIANCE (1e-5), so cached answers are
    reproducible and no client can nudge another's score;
  - it stays close to torch fp32: no probe label differs, and no probability
    by more than AGREEMENT (a proxy for "accuracy within 1 point of fp32";
    `make bench-triton` measures held-out accuracy per engine).
The fastest qualifying engine wins. The choice is cached per machine (CPU
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

INVARIANCE = 1e-5
AGREEMENT = 0.05
REFERENCE = "torch-fp32"
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


@dataclass(frozen=True)
class Trial:
    engine: str
    sentences_per_second: float
    batch_drift: float  # max |score alone - score in the probe batch|
    max_difference: float  # max |score - torch fp32 score|
    labels_agree: bool

    @property
    def invariant(self) -> bool:
        return self.batch_drift <= INVARIANCE

    @property
    def agrees(self) -> bool:
        return self.labels_agree and self.max_difference <= AGREEMENT

    @property
    def qualifies(self) -> bool:
        return self.invariant and self.agrees


def trial(engine: str, score: Score, reference: NDArray[np.float32] | None,
          repeats: int = 3) -> Trial:  # fmt: skip
    """Measure one engine on PROBE_TEXTS (the median of `repeats` passes)."""
    batch = score(PROBE_TEXTS)
    distinct = list(dict.fromkeys(PROBE_TEXTS))
    alone = np.concatenate([score([text]) for text in distinct])
    first = [PROBE_TEXTS.index(text) for text in distinct]
    drift = float(np.abs(batch[first] - alone).max())
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        score(PROBE_TEXTS)
        rates.append(len(PROBE_TEXTS) / (time.perf_counter() - started))
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


def best(trials: Sequence[Trial], *, judge_agreement: bool = True) -> Trial:
    """The fastest qualifying trial; if none qualifies, the fastest of all.
    Without `judge_agreement` (a stand-in: random weights put every score near
    0.5, where int8's small errors look large and flip labels) only batch
    invariance counts."""
    qualified = [t for t in trials if t.invariant and (t.agrees or not judge_agreement)]
    return max(qualified or trials, key=lambda t: t.sentences_per_second)


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


def code_digest(directory: Path = Path(__file__).parent) -> str:
    """sha256 over the model's Python files (name and content): the code that
    feeds, runs and measures the engines."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


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
