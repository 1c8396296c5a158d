"""DistilBERT's classification forward over packed texts (torch; no Triton).

The texts of a micro-batch are laid end to end (batching.pack), so the
Linear layers, which are most of the work, see exactly the real tokens: no
padding is computed. A block-diagonal mask keeps each text's attention to
itself, which makes a text's logits independent of its batch-mates in fp32.
The last layer only needs each text's first ([CLS]) token after attention,
so its output projection and FFN run on one row per text.

`prepare` fuses each layer's query, key and value projections into one
Linear layer (one matrix multiply, and under int8 one activation
quantization instead of three). The modules are otherwise transformers'
DistilBertForSequenceClassification's, so this runs whatever they hold (fp32
or dynamically quantized Linear layers); they are typed `Any` because they
are reached by attribute name.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from batching import Packed

# Names this forward in the model's fingerprint: scores cached from another
# forward path (e.g. padded, unfused) are never served for it.
NAME = "packed-fused-qkv-flash"


def require_distilbert(config: Any) -> None:
    """Refuse a checkpoint config that is not DistilBERT's (this forward's layout)."""
    model_type = getattr(config, "model_type", None)
    if model_type != "distilbert":
        raise ValueError(
            f"distilbert_sst2 runs DistilBERT checkpoints, got model_type {model_type!r}"
        )


def prepare(model: Any) -> Any:
    """Check that `model` is a DistilBERT sequence classifier and fuse its
    q/k/v projections (in place; transformers' own forward no longer runs)."""
    require_distilbert(getattr(model, "config", None))
    for layer in model.distilbert.transformer.layer:
        attention = layer.attention
        parts = (attention.q_lin, attention.k_lin, attention.v_lin)
        fused = torch.nn.Linear(attention.dim, 3 * attention.dim)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight for p in parts]))
            fused.bias.copy_(torch.cat([p.bias for p in parts]))
        attention.qkv_lin = fused.eval()
        del attention.q_lin, attention.k_lin, attention.v_lin
    return model


def quantize_dynamic(model: Any) -> Any:
    """torch.ao dynamic int8 of every Linear layer (int8 weights, activations
    quantized per forward pass, so scores depend slightly on batch-mates)."""
    with warnings.catch_warnings():
        # torch 2.13 marks torch.ao.quantization and its quantized tensor types
        # deprecated (in favour of torchao); the CPU kernels are still there.
        warnings.filterwarnings("ignore", message=".*quantize.*deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
        return torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear}, dtype=torch.qint8
        )


def logits(model: Any, packed: Packed) -> torch.Tensor:
    """Logits [B, num_labels] for the B packed texts, in packing order."""
    token_ids, positions, segments, starts = (
        _tensor(a) for a in (packed.token_ids, packed.positions, packed.segments, packed.starts)
    )
    mask = segments[:, None] == segments[None, :]  # [T, T], True = may attend

    embeddings = model.distilbert.embeddings
    hidden = embeddings.LayerNorm(
        embeddings.word_embeddings(token_ids) + embeddings.position_embeddings(positions)
    )
    layers = model.distilbert.transformer.layer
    for number, layer in enumerate(layers):
        last = number == len(layers) - 1  # only the [CLS] rows are read after it
        hidden = _block(layer, hidden, mask, starts if last else None)
    pooled = torch.relu(model.pre_classifier(hidden))
    result: torch.Tensor = model.classifier(pooled)
    return result


def _tensor(array: Any) -> torch.Tensor:
    """numpy arrays (served) or tensors (traced for the ONNX export, which
    must see them as inputs, not constants)."""
    return array if isinstance(array, torch.Tensor) else torch.from_numpy(array)


def _block(layer: Any, hidden: torch.Tensor, mask: torch.Tensor, rows: Any) -> torch.Tensor:
    """One TransformerBlock; with `rows`, only those rows come out."""
    attention = layer.attention
    heads, size, dim = attention.n_heads, attention.attention_head_size, attention.dim
    query, key, value = attention.qkv_lin(hidden).split(dim, dim=-1)
    if rows is not None:
        query, hidden, mask = query[rows], hidden[rows], mask[rows]

    def split(x: torch.Tensor) -> torch.Tensor:  # [N, dim] -> [1, heads, N, size]
        return x.reshape(1, x.shape[0], heads, size).transpose(1, 2)

    # 4-D, as torch's fused CPU kernel (flash attention) takes them: with 3-D
    # inputs it ran the unfused math path, 2.4x slower on a 512-token text
    context = F.scaled_dot_product_attention(
        split(query), split(key), split(value), mask[None, None]
    )
    context = context.transpose(1, 2).reshape(hidden.shape[0], dim)
    attended = layer.sa_layer_norm(attention.out_lin(context) + hidden)
    ffn = layer.ffn
    out: torch.Tensor = layer.output_layer_norm(
        ffn.lin2(ffn.activation(ffn.lin1(attended))) + attended
    )
    return out
