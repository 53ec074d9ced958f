"""A forward pass as the kernels a serving engine launches: FLOPs and bytes of each, per device under TP.

This is the one place the arithmetic of a transformer lives. `ModelCard.prefill_flops` and friends are sums over
these lists, the roofline model times each kernel on a device, and the Vidur benchmark checks the per-kernel
predictions against measured operator times, so the three can never drift apart.

Conventions (`spec/cost-model.md` section 1): 2 FLOPs per multiply-accumulate; bytes are device-memory traffic
of one launch (weights + inputs read + outputs written; FlashAttention-style attention that never writes the
score matrix); tensor parallelism splits heads and the MLP's intermediate dimension Megatron-style, so each
device holds 1/tp of every projection and two all-reduces of the residual stream follow each layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hetagent.errors import HetagentError

KERNEL_KINDS = ("matmul", "matvec", "attention", "norm", "rope", "activation", "add", "embedding", "allreduce", "transfer")


@dataclass(frozen=True)
class Kernel:
    """One kernel as launched on one device (of tp): its work, and how many times one forward pass launches it."""

    name: str  # "qkv_proj", "attention", "mlp_down", ...
    kind: str  # one of KERNEL_KINDS: picks the efficiency curves it is timed with
    flops: float
    bytes: float  # device-memory traffic; for an all-reduce or a transfer, the message size
    count: int = 1  # launches per forward pass (usually the number of layers)
    rows: float = 0  # a row-wise kernel (norm, rope, activation, add, embedding): the rows it works through
    # independently, one per token; a row is one thread block's work, so few rows cannot fill the device
    cached: bool = False  # its bytes come from the last-level cache: its pass's working set stays there between
    # passes (`hetagent.cost.phases.phase_time` decides; timed with the device's cache curves where it has them)

    @property
    def total_flops(self) -> float:
        return self.flops * self.count

    @property
    def total_bytes(self) -> float:
        return self.bytes * self.count


def matmul(name: str, m: float, k: float, n: float, b: float, count: int, weight_rows: float | None = None) -> Kernel:
    """An (m×k)·(k×n) product reading a k×n weight: 2·m·k·n FLOPs, (k·n + m·k + m·n)·b bytes. With one row it is
    a matrix-vector product ("matvec"): libraries run those with other kernels than skinny GEMMs (no packing),
    and their speed differs enough to need curves of their own.

    `weight_rows` overrides how many weight matrices of k×n are read (a MoE grouped GEMM reads only the
    experts its tokens were routed to)."""
    weights = (weight_rows if weight_rows is not None else 1) * k * n
    return Kernel(name, "matvec" if m == 1 else "matmul", 2 * m * k * n, (weights + m * k + m * n) * b, count)


def per_device(n: int, tp: int) -> int:
    """Heads (or KV heads) one of `tp` devices holds: KV heads are replicated when tp exceeds their number."""
    return math.ceil(n / tp)


def experts_touched(num_experts: int, per_token: int, tokens: float) -> float:
    """Expected distinct experts `tokens` tokens are routed to when routing is uniform: E·(1 − (1 − k/E)^T)."""
    return num_experts * (1 - (1 - per_token / num_experts) ** tokens)


@dataclass(frozen=True)
class _Attention:
    """Self- or cross-attention work of one layer, for `sequences` sequences."""

    queries: int  # query tokens per sequence
    keys: int  # keys each query attends to (context length)
    causal: bool


def _stack(card, tokens: int, attention: _Attention, b: float, tp: int, layers: int, *, decoder: bool, kv_b: float,
           cross: _Attention | None = None) -> list[Kernel]:
    """The kernels of `layers` transformer layers over `tokens` tokens in all; `kv_b`: bytes of a KV-cache element."""
    d = card.hidden_size
    heads = per_device(card.num_heads, tp) * card.head_size
    kv = per_device(card.num_kv_heads, tp) * card.head_size
    sequences = tokens // attention.queries
    kernels = [
        Kernel("input_norm", "norm", 0.0, 2 * tokens * d * b, layers, rows=tokens),
        matmul("qkv_proj", tokens, d, heads + 2 * kv, b, layers),
    ]
    if not card.learned_positions:  # rotary embeddings rotate Q and K in place
        kernels.append(Kernel("rope", "rope", 0.0, 2 * tokens * (heads + kv) * b, layers, rows=tokens))
    kernels.append(_attention_kernel("attention", attention, sequences, heads, kv, b, kv_b, layers))
    kernels.append(matmul("o_proj", tokens, heads, d, b, layers))
    kernels += _allreduce("attention_allreduce", tokens * d * b, tp, layers)
    kernels.append(Kernel("post_attention_norm", "norm", 0.0, 2 * tokens * d * b, layers, rows=tokens))
    if cross is not None:
        kernels += [
            matmul("cross_q_proj", tokens, d, heads, b, layers),
            _attention_kernel("cross_attention", cross, sequences, heads, kv, b, kv_b, layers),
            matmul("cross_o_proj", tokens, heads, d, b, layers),
            *_allreduce("cross_allreduce", tokens * d * b, tp, layers),
            Kernel("cross_norm", "norm", 0.0, 2 * tokens * d * b, layers, rows=tokens),
        ]
    kernels += _mlp(card, tokens, b, tp, layers, moe=decoder and card.is_moe)
    kernels += _allreduce("mlp_allreduce", tokens * d * b, tp, layers)
    kernels.append(Kernel("residual_add", "add", 0.0, 3 * tokens * d * b, 2 * layers, rows=tokens))
    return kernels


def _attention_kernel(name: str, shape: _Attention, sequences: int, heads: int, kv: int, b: float, kv_b: float,
                      layers: int) -> Kernel:
    # QKᵀ and AV are 2·q·k·head_width FLOPs each; a causal mask halves them when queries attend to each other.
    flops = 4 * shape.queries * shape.keys * heads * (0.5 if shape.causal else 1.0)
    traffic = shape.queries * 2 * heads * b + shape.keys * 2 * kv * kv_b  # read Q and write O; read K and V
    return Kernel(name, "attention", sequences * flops, sequences * traffic, layers)


def _allreduce(name: str, message_bytes: float, tp: int, layers: int) -> list[Kernel]:
    return [Kernel(name, "allreduce", 0.0, message_bytes, layers)] if tp > 1 else []


def _mlp(card, tokens: int, b: float, tp: int, layers: int, *, moe: bool) -> list[Kernel]:
    d = card.hidden_size
    inner = math.ceil(card.intermediate_size / tp)
    up = (2 if card.gated_mlp else 1) * inner
    if not moe:
        return [
            matmul("mlp_up", tokens, d, up, b, layers),
            Kernel("mlp_act", "activation", 0.0, (up + inner) * tokens * b, layers, rows=tokens),
            matmul("mlp_down", tokens, inner, d, b, layers),
        ]
    # A grouped GEMM over the experts: every token runs experts_per_token experts; the weights read are those of
    # the experts the batch touches (all of them for a long prompt, a few for a small decode batch).
    routed = tokens * card.experts_per_token
    touched = experts_touched(card.num_experts, card.experts_per_token, tokens)
    return [
        matmul("router", tokens, d, card.num_experts, b, layers),
        matmul("mlp_up", routed, d, up, b, layers, weight_rows=touched),
        Kernel("mlp_act", "activation", 0.0, (up + inner) * routed * b, layers, rows=routed),
        matmul("mlp_down", routed, inner, d, b, layers, weight_rows=touched),
    ]


def _model_ends(card, tokens: int, sequences: int, b: float, tp: int) -> tuple[list[Kernel], list[Kernel]]:
    """Kernels before the first layer (embedding lookup) and after the last (final norm, LM head on the last
    position of each sequence: serving engines compute logits only where a token is sampled)."""
    d = card.hidden_size
    head = [Kernel("embedding", "embedding", 0.0, 2 * tokens * d * b, rows=tokens)]
    tail = [Kernel("final_norm", "norm", 0.0, 2 * tokens * d * b, rows=tokens)]
    if card.generative:
        tail.append(matmul("lm_head", sequences, d, math.ceil(card.vocab_size / tp), b, 1))
    return head, tail


def prefill_kernels(card, tokens: int, *, batch: int = 1, dtype: str | None = None, tp: int = 1) -> list[Kernel]:
    """The kernels of one prefill: `batch` prompts of `tokens` tokens (an encoder-only model: one encoding)."""
    b = card.dtype_bytes(dtype)
    total = batch * tokens
    kernels: list[Kernel] = []
    cross = None
    if card.encoder_layers:
        frames = card.encoder_positions
        kernels += _stack(card, batch * frames, _Attention(frames, frames, causal=False), b, tp, card.encoder_layers,
                          decoder=False, kv_b=card.kv_bytes(dtype))
        kv = per_device(card.num_kv_heads, tp) * card.head_size
        kernels.append(matmul("cross_kv_proj", batch * frames, card.hidden_size, 2 * kv, b, card.num_layers))
        cross = _Attention(tokens, frames, causal=False)
    if card.other_params:
        # Parameters outside the stacks (Whisper's conv front-end over its frames, a TTS vocoder over the text)
        # run once per request, costed as one dense layer over the tokens they see.
        seen = batch * (card.encoder_positions or tokens)
        kernels.append(Kernel("other", "matmul", 2 * card.other_params * seen, card.other_params * b))
    head, tail = _model_ends(card, total, batch, b, tp)
    self_attention = _Attention(tokens, tokens, causal=card.generative)
    return head + kernels + _stack(card, total, self_attention, b, tp, card.num_layers, decoder=True,
                                   kv_b=card.kv_bytes(dtype), cross=cross) + tail


def decode_kernels(card, context: int, *, batch: int = 1, dtype: str | None = None, tp: int = 1) -> list[Kernel]:
    """The kernels of one decode step: `batch` sequences each adding one token after `context` cached tokens."""
    if not card.generative:
        raise HetagentError(f"model {card.name!r} is a {card.kind} model: it has no decode phase")
    b = card.dtype_bytes(dtype)
    cross = _Attention(1, card.encoder_positions, causal=False) if card.encoder_layers else None
    head, tail = _model_ends(card, batch, batch, b, tp)
    return head + _stack(card, batch, _Attention(1, context + 1, causal=False), b, tp, card.num_layers, decoder=True,
                         kv_b=card.kv_bytes(dtype), cross=cross) + tail
