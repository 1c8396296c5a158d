"""WordPiece tokenizers for tests of token-counted costs: DistilBERT's own
(the bert-base-uncased vocabulary, as standin-tiny has it), and one shaped like
it over a ten-word vocabulary ("I love you!" is 6 tokens, an unknown word 1)."""

from __future__ import annotations

import functools

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from tokenizers.implementations import BertWordPieceTokenizer

from modelctl.standins import bert_uncased_vocab

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "i", "love", "you", "!", "film", "##s"]


def bert_like_json(truncate_at: int | None = None) -> str:
    """A DistilBERT-shaped tokenizer.json over a tiny vocabulary."""
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    if truncate_at is not None:
        tokenizer.enable_truncation(truncate_at)
    return tokenizer.to_str()


@functools.cache
def distilbert() -> Tokenizer:
    """DistilBERT's tokenizer: what the proxy counts once the model sent it."""
    return Tokenizer.from_str(
        BertWordPieceTokenizer(str(bert_uncased_vocab()), lowercase=True).to_str()
    )
