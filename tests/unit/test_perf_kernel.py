"""make bench-triton's in-process measurements, on a fake engine and clock."""

from __future__ import annotations

import json
from collections.abc import Sequence

from perf.triton.kernel import padding_ratios
from perf.triton.report import padding_section


class PaddedEngine:
    """Scores in time proportional to the padded tokens, on its own clock:
    every text is 10 tokens, padded up to the current multiple."""

    def __init__(self) -> None:
        self.multiple = 0
        self.now = 0.0
        self.calls: list[int] = []  # the multiple of every call

    def set_multiple(self, multiple: int) -> None:
        self.multiple = multiple

    def clock(self) -> float:
        return self.now

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [[1] * 10 for _ in texts]

    def score_token_ids(self, batch: Sequence[Sequence[int]]) -> None:
        tokens = sum(len(ids) for ids in batch)
        self.now += -(-tokens // self.multiple) * self.multiple
        self.calls.append(self.multiple)


def test_padding_ratios_time_each_batch_under_every_multiple() -> None:
    engine = PaddedEngine()
    ratios = padding_ratios(
        engine, engine.set_multiple, ["t"] * 64, (1, 4, 32), (8, 64), 16, clock=engine.clock
    )
    # 10 tokens: 16 at multiples of 8 and 16, 64 at 64; 40 tokens: 40, 48, 64; 320: 320, 320, 320
    assert ratios == {8: {1: 1.0, 4: 40 / 48, 32: 1.0}, 64: {1: 4.0, 4: 64 / 48, 32: 1.0}}
    assert engine.multiple == 16  # the served multiple is left set
    assert set(engine.calls) == {8, 16, 64}


def test_the_report_shows_padding_ratios_as_saved() -> None:
    saved = json.loads(
        json.dumps(
            {
                "served": 16,
                "texts": 4,
                "ratios": {"openvino-int8": {8: {1: 0.98, 32: 1.0}, 32: {1: 1.13, 32: 1.01}}},
            }
        )
    )
    lines = padding_section(saved)
    assert "| openvino-int8 | 32 | 1.130 | 1.010 |" in lines
    assert "of **16 tokens** and 4 texts." in lines[1]
    assert padding_section({"served": 16, "texts": 4, "ratios": {}}) == []  # no OpenVINO
