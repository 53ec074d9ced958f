"""The reference BERT encoder in torch: sentence embeddings as all-MiniLM-L6-v2 and its kin compute them.

One pure function of (weights, inputs), exported by the compiler like the decoder's (`hetagent.models.reference`):

    embed(tokens[B,T], lengths[B])  -> unit-length embedding[B,H]: the mean of the last hidden states over the
                                       real tokens, normalised (sentence-transformers' mean pooling + Normalize)

BertModel's arithmetic: word + absolute position + token-type-0 embeddings, LayerNorm; per layer, post-norm
self-attention over the real tokens (padding masked) and an erf-GELU MLP, each added to its input and
LayerNorm-ed. Static shapes and masks, as in the decoder; weights carry BertModel's names. Needs torch.
"""

from __future__ import annotations

import torch

from hetagent.models.card import ModelCard
from hetagent.models.reference import Weights, _heads, _linear


def _layer_norm(w: Weights, name: str, x, eps: float):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], w[name + ".weight"], w[name + ".bias"], eps)


def _layer(model: ModelCard, w: Weights, i: int, h, allowed):
    p = f"encoder.layer.{i}."
    q, k, v = (_heads(_linear(w, f"{p}attention.self.{n}", h), model.num_heads, model.head_size)
               for n in ("query", "key", "value"))
    scores = (q @ k.transpose(-1, -2)) * (model.head_size ** -0.5)
    scores = torch.where(allowed, scores, torch.finfo(scores.dtype).min)
    out = torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v  # [B, H, T, D]
    batch, _, length, _ = out.shape
    out = out.transpose(1, 2).reshape(batch, length, model.attention_dim)
    h = _layer_norm(w, p + "attention.output.LayerNorm", h + _linear(w, p + "attention.output.dense", out), model.norm_eps)
    inner = torch.nn.functional.gelu(_linear(w, p + "intermediate.dense", h))
    return _layer_norm(w, p + "output.LayerNorm", h + _linear(w, p + "output.dense", inner), model.norm_eps)


def embed(model: ModelCard, w: Weights, tokens, lengths):
    """A unit-length text embedding: the mean of the last hidden states over the real tokens."""
    length = tokens.shape[1]
    h = (w["embeddings.word_embeddings.weight"][tokens] + w["embeddings.position_embeddings.weight"][:length][None]
         + w["embeddings.token_type_embeddings.weight"][0])
    h = _layer_norm(w, "embeddings.LayerNorm", h, model.norm_eps)
    real = torch.arange(length)[None, :] < lengths[:, None]  # [B, T]
    for i in range(model.num_layers):
        h = _layer(model, w, i, h, real[:, None, None, :])
    h = h.float()  # pool in fp32 whatever the model dtype
    mean = torch.where(real[:, :, None], h, 0.0).sum(dim=1) / lengths[:, None].float()
    return (mean / mean.norm(dim=-1, keepdim=True)).to(w["embeddings.LayerNorm.weight"].dtype)
