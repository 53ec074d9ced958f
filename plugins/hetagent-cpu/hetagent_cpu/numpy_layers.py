"""A Llama-architecture forward pass in numpy float32, one callable per kernel of `hetagent.models.kernels`.

This is what `hetagent calibrate --backend cpu` times: each kernel alone (to fit the curves) and the whole
forward (to check the fitted model end to end). Weights are random; only the time matters here. The callables
are paired with the `Kernel` records describing their work, so measured and predicted always talk about the
same launch.
"""

from __future__ import annotations

from typing import Callable

from hetagent.models.card import ModelCard
from hetagent.models.kernels import Kernel, decode_kernels, prefill_kernels

DTYPE = "fp32"

Launch = tuple[Kernel, Callable[[], object]]


class NumpyLayers:
    """One layer's weights (shared by every layer, which changes nothing for timing) and the model ends."""

    def __init__(self, card: ModelCard, seed: int = 0):
        import numpy as np

        self.np, self.card = np, card
        rng = np.random.default_rng(seed)
        d, hd = card.hidden_size, card.head_size
        self.heads, self.kv_heads = card.num_heads, card.num_kv_heads
        width = (self.heads + 2 * self.kv_heads) * hd

        def weight(*shape):
            return (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[0])).astype(np.float32)

        self.wqkv, self.wo = weight(d, width), weight(self.heads * hd, d)
        self.w_up, self.w_down = weight(d, 2 * card.intermediate_size), weight(card.intermediate_size, d)
        self.norm = np.ones(d, dtype=np.float32)
        self.table, self.w_head = weight(card.vocab_size, d), weight(d, card.vocab_size)

    def launches(self, phase: str, tokens: int, batch: int) -> list[Launch]:
        """One forward's launches in order, each paired with its kernel; `tokens` is the prompt length for a
        prefill and the cached context for a decode step. Each layer kernel runs `kernel.count` times."""
        np, card = self.np, self.card
        d, hd, inner = card.hidden_size, card.head_size, card.intermediate_size
        queries = tokens if phase == "prefill" else 1
        keys = tokens if phase == "prefill" else tokens + 1
        rows = batch * queries
        rng = np.random.default_rng(1)
        ids = rng.integers(0, card.vocab_size, rows)
        x = rng.standard_normal((rows, d), dtype=np.float32)
        qkv = x @ self.wqkv
        gate_up = x @ self.w_up
        hidden = gate_up[:, :inner]
        cache = rng.standard_normal((2, batch, self.kv_heads, keys, hd), dtype=np.float32)
        angles = rng.standard_normal((rows, hd // 2), dtype=np.float32)
        cos, sin = np.cos(angles), np.sin(angles)
        q = qkv[:, : self.heads * hd].reshape(batch, queries, self.heads, hd).transpose(0, 2, 1, 3)
        mask = np.triu(np.full((queries, keys), -np.inf, dtype=np.float32), 1) if phase == "prefill" else None
        calls: dict[str, Callable[[], object]] = {
            "embedding": lambda: self.table[ids],
            "input_norm": lambda: self._rms_norm(x),
            "qkv_proj": lambda: x @ self.wqkv,
            "rope": lambda: self._rope(qkv[:, : (self.heads + self.kv_heads) * hd], cos, sin),
            "attention": lambda: self._attention(q, cache, mask),
            "o_proj": lambda: x[:, : self.heads * hd] @ self.wo,
            "post_attention_norm": lambda: self._rms_norm(x),
            "mlp_up": lambda: x @ self.w_up,
            "mlp_act": lambda: self._silu_mul(gate_up, inner),
            "mlp_down": lambda: hidden @ self.w_down,
            "residual_add": lambda: x + x,
            "final_norm": lambda: self._rms_norm(x),
            "lm_head": lambda: x[:batch] @ self.w_head,
        }
        if phase == "prefill":
            kernels = prefill_kernels(card, tokens, batch=batch, dtype=DTYPE)
        else:
            kernels = decode_kernels(card, tokens, batch=batch, dtype=DTYPE)
        return [(kernel, calls[kernel.name]) for kernel in kernels]

    def _rms_norm(self, x):
        np = self.np
        return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.card.norm_eps)) * self.norm

    def _rope(self, qk, cos, sin):
        np = self.np
        rows, hd = qk.shape[0], self.card.head_size
        heads = qk.reshape(rows, -1, hd)
        first, second = heads[..., : hd // 2], heads[..., hd // 2:]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate((first * c - second * s, first * s + second * c), axis=-1)

    def _attention(self, q, cache, mask):
        np = self.np
        batch, heads, queries, hd = q.shape
        group = heads // self.kv_heads
        k, v = cache[0], cache[1]  # (batch, kv_heads, keys, hd)
        # in place over the score matrix, normalised after the product: each pass over scores x keys is a memory
        # pass, and a temporary per step made this attention 4.5x slower than the compiled one it stands for
        grouped = q.reshape(batch, self.kv_heads, group * queries, hd) * np.float32(1 / np.sqrt(hd))
        scores = grouped @ k.transpose(0, 1, 3, 2)
        if mask is not None:
            masked = scores.reshape(batch, self.kv_heads, group, queries, -1)
            masked += mask
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        total = scores.sum(axis=-1, keepdims=True)
        out = scores @ v
        out /= total
        return out

    def _silu_mul(self, gate_up, inner):
        np = self.np
        gate, up = gate_up[:, :inner], gate_up[:, inner:]
        return gate / (1.0 + np.exp(-gate)) * up
