"""What texts cost the model: their tokens, counted with the served model's
own tokenizer when the proxy has it.

The model sends its tokenizer (the `TOKENIZER` output, fetched once per
model release: the tokenizer is part of the checkpoint). With it, a text
shorter than MAX_TOKENS characters costs exactly the tokens the model
computes for it ([CLS] and [SEP] included); longer texts cost MAX_TOKENS,
which the character bound already gives without tokenizing them. Without
it (before the first fetch, or if the fetch fails), every text costs the
character bound of `text_cost`, which never undercounts. A
typical English sentence costs about a quarter of its characters, so the
same admission budget lets about four times more short texts share a
forward pass, while a 512-token text still fills it alone.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from tokenizers import Tokenizer

# The cost model. A text's cost bounds the tokens the model computes for it:
# every token takes at least one character, except that a Hangul syllable
# decomposes into up to three jamo; [CLS] and [SEP] add two; the model reads at
# most MAX_TOKENS. A request that needs no inference still costs 1.
MAX_TOKENS = 512
SPECIAL_TOKENS = 2
HANGUL_SYLLABLES = re.compile("[\uac00-\ud7a3]")


def text_cost(text: str) -> int:
    """Upper bound of the tokens `text` costs the model (1..MAX_TOKENS)."""
    if len(text) >= MAX_TOKENS:
        return MAX_TOKENS
    extra = 2 * len(HANGUL_SYLLABLES.findall(text))
    return min(MAX_TOKENS, len(text) + extra + SPECIAL_TOKENS)


INLINE_CHARS = 4096  # tokenized on the event loop up to this much text (a few ms), else in a thread
# Larger tokenizing runs here, one at a time: encode_batch already spreads one
# batch over every core, and each run in flight holds its texts' token buffers
# (native memory). Six at once (asyncio's default pool on 2 cores) took the
# proxy to ~245 MiB under the long-text attack; one at a time, ~160
# (perf/README.md, "Under attack"), the honest p99 no worse: a short request
# is tokenized on the event loop, never queued here.
TOKENIZER_THREAD = ThreadPoolExecutor(1, thread_name_prefix="tokenizer")
T = TypeVar("T")


async def tokenizing(run: Callable[..., T], *args: object) -> T:
    """`run(*args)` in the tokenizer's thread (it releases the GIL)."""
    return await asyncio.get_running_loop().run_in_executor(TOKENIZER_THREAD, run, *args)


@dataclass(frozen=True)
class TextCosts:
    """Cost units of texts: exact token counts under `release`'s tokenizer,
    the character bound without one."""

    tokenizer: Tokenizer | None = None
    release: str | None = None

    @classmethod
    def from_json(cls, raw: str, release: str) -> TextCosts:
        """From a tokenizer.json document; raises ValueError if it is not one."""
        try:
            tokenizer = Tokenizer.from_str(raw)
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ValueError(f"not a tokenizer: {exc}") from None
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(tokenizer, release)

    def bounds(self, texts: Sequence[str]) -> tuple[list[int], list[int]]:
        """Each text's character bound, and which texts a token count can lower."""
        costs = [text_cost(t) for t in texts]
        if self.tokenizer is None:
            return costs, []
        return costs, [i for i, cost in enumerate(costs) if cost < MAX_TOKENS]

    def count(self, texts: Sequence[str]) -> list[int]:
        """Cost of each text (pure; blocks while tokenizing)."""
        return self._tokenized(texts, *self.bounds(texts))

    def _tokenized(self, texts: Sequence[str], costs: list[int], short: list[int]) -> list[int]:
        """`costs` with the `short` texts' bounds lowered to their token counts."""
        if short and self.tokenizer is not None:
            encoded = self.tokenizer.encode_batch([texts[i] for i in short])
            for i, encoding in zip(short, encoded, strict=True):
                costs[i] = min(costs[i], len(encoding.ids))  # the bound holds (tested)
        return costs

    async def __call__(self, texts: Sequence[str]) -> list[int]:
        """`count`, in the tokenizer's thread when there is much to tokenize,
        so a large request never stalls the loop."""
        costs, short = self.bounds(texts)
        if sum(len(texts[i]) for i in short) <= INLINE_CHARS:
            return self._tokenized(texts, costs, short)
        return await tokenizing(self._tokenized, texts, costs, short)
