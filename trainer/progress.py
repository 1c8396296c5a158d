"""Progress for long work: a tqdm bar on a terminal, log lines elsewhere.

Under `make up` (honcho) or CI, output is a pipe: tqdm's carriage returns would
arrive as one endless line, so every 5% becomes a plain log line instead.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from tqdm import tqdm

log = logging.getLogger("trainer")


class Progress:
    def __init__(self, total: int, description: str) -> None:
        self.total, self.description = total, description
        self.done, self.started, self.next_report = 0, time.monotonic(), 0.05
        self.bar = tqdm(total=total, desc=description, unit="step") if sys.stderr.isatty() else None

    def update(self, status: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update()
            return
        fraction = self.done / self.total
        if fraction >= self.next_report or self.done == self.total:
            elapsed = time.monotonic() - self.started
            eta = elapsed / fraction - elapsed
            log.info("%s %3.0f%% (%d/%d) %s, %.0fs left", self.description, 100 * fraction,
                     self.done, self.total, status, eta)  # fmt: skip
            self.next_report = fraction + 0.05

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.close()
