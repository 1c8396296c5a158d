"""DistilBERT's classification forward over packed texts (torch; no Triton).

The texts of a micro-batch are laid end to end (inference.pack), so the
Linear layers, which are most of the work, see exactly the real tokens: no
padding is computed. A block-diagonal mask keeps each text's attention to
itself, which makes a text's logits independent of its batch-mates in fp32.
The last layer only needs each text's first ([CLS]) token after attention,
so its query, output projection and FFN run on one row per text.

It reuses the modules of transformers' DistilBertForSequenceClassification,
so it runs whatever they hold (fp32 or dynamically quantized Linear layers);
the modules are typed `Any` because they are reached by attribute name.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from inference import Packed


def supports(model: torch.nn.Module) -> bool:
    """Whether `model` is a DistilBERT sequence classifier this forward can run."""
    return getattr(getattr(model, "config", None), "model_type", None) == "distilbert" and all(
        hasattr(model, name) for name in ("distilbert", "pre_classifier", "classifier")
    )


def logits(model: Any, packed: Packed) -> torch.Tensor:
    """Logits [B, num_labels] for the B packed texts, in packing order."""
    token_ids = torch.from_numpy(packed.token_ids)
    positions = torch.from_numpy(packed.positions)
    segments = torch.from_numpy(packed.segments)
    starts = torch.from_numpy(packed.starts)
    mask = segments[:, None] == segments[None, :]  # [T, T], True = may attend

    embeddings = model.distilbert.embeddings
    hidden = embeddings.LayerNorm(
        embeddings.word_embeddings(token_ids) + embeddings.position_embeddings(positions)
    )
    layers = model.distilbert.transformer.layer
    for number, layer in enumerate(layers):
        if number == len(layers) - 1:  # only the [CLS] rows are read after this
            hidden = _block(layer, hidden, hidden[starts], mask[starts])
        else:
            hidden = _block(layer, hidden, hidden, mask)
    pooled = torch.relu(model.pre_classifier(hidden))
    result: torch.Tensor = model.classifier(pooled)
    return result


def _block(
    layer: Any, hidden: torch.Tensor, queries: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """One TransformerBlock: attention of `queries` rows over all of `hidden`."""
    attention = layer.attention
    heads, size = attention.n_heads, attention.attention_head_size

    def split(x: torch.Tensor) -> torch.Tensor:  # [N, heads*size] -> [heads, N, size]
        return x.view(x.shape[0], heads, size).transpose(0, 1)

    context = F.scaled_dot_product_attention(
        split(attention.q_lin(queries)),
        split(attention.k_lin(hidden)),
        split(attention.v_lin(hidden)),
        attn_mask=mask,
    )
    context = context.transpose(0, 1).reshape(queries.shape[0], heads * size)
    attended = layer.sa_layer_norm(attention.out_lin(context) + queries)
    ffn = layer.ffn
    out: torch.Tensor = layer.output_layer_norm(
        ffn.lin2(ffn.activation(ffn.lin1(attended))) + attended
    )
    return out
