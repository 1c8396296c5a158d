"""DistilBERT classification without the last layer's unused work.

The classifier reads only the first token ([CLS]) of the last layer. That layer
still needs every token's keys and values, but its queries, attention output,
feed-forward and layer norms are needed for [CLS] alone. Computing them for one
position instead of all skips about three quarters of the last layer's
multiply-adds: a quarter of the offline recipe's three layers. Same function,
same parameters, same checkpoint; only the arithmetic that nobody reads is gone.
The served forward does the same (model_repository/.../packed_forward.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional
from transformers import DistilBertForSequenceClassification
from transformers.masking_utils import create_bidirectional_mask


def full_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The model's own forward: every layer for every token."""
    logits: torch.Tensor = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits


def classify(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`full_logits`, computing the last layer for [CLS] only when `model` is a
    DistilBERT classifier."""
    if not isinstance(model, DistilBertForSequenceClassification):
        return full_logits(model, input_ids, attention_mask)
    bert = model.distilbert
    hidden = bert.embeddings(input_ids)
    mask = create_bidirectional_mask(
        config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask
    )
    *early, last = bert.transformer.layer
    for block in early:
        hidden = block(hidden, mask)
    pooled = _first_token_block(last, hidden, attention_mask)
    pooled = torch.relu(model.pre_classifier(pooled))
    logits: torch.Tensor = model.classifier(model.dropout(pooled))
    return logits


def _first_token_block(
    block: Any, hidden: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """A TransformerBlock's output at position 0: (batch, dim)."""
    attention = block.attention
    batch, _, dim = hidden.shape
    heads, head_dim = attention.n_heads, attention.attention_head_size

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, heads, head_dim).transpose(1, 2)

    first = hidden[:, :1]
    context = functional.scaled_dot_product_attention(
        split(attention.q_lin(first)),
        split(attention.k_lin(hidden)),
        split(attention.v_lin(hidden)),
        attn_mask=attention_mask[:, None, None, :].bool(),
        dropout_p=attention.dropout.p if attention.training else 0.0,
        scale=attention.scaling,
    )
    context = attention.out_lin(context.transpose(1, 2).reshape(batch, 1, dim))
    attended = block.sa_layer_norm(context + first)
    output: torch.Tensor = block.output_layer_norm(block.ffn(attended) + attended)
    return output[:, 0]
