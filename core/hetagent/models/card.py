"""`ModelCard`: the architecture of a model, from which sizes, FLOPs and bytes follow.

A card describes transformer stacks by their shapes: a decoder-only LLM (Llama family, optionally
mixture-of-experts), an encoder-decoder (Whisper: an encoder stack of the same width plus cross-attention in
the decoder), or an encoder-only model (sentence embeddings, a TTS model's text encoder). Parameters outside the
stacks (a convolutional front-end, a vocoder) are counted in `other_params`. Every card names its source.

FLOPs count 2 per multiply-accumulate; bytes are what a forward pass reads and writes in device memory. The
per-kernel breakdown lives in `hetagent.models.kernels`; the totals here are sums over it, so the cost model
and the card can never disagree. Formulas: `spec/cost-model.md` section 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from hetagent.dtypes import BYTES_PER_ELEMENT
from hetagent.errors import HetagentError

MODEL_KINDS = ("llm", "stt", "tts", "embedding")
# Kinds that generate tokens one at a time after the prompt (they have a decode phase and an LM head).
GENERATIVE_KINDS = ("llm", "stt")


@dataclass(frozen=True)
class ModelCard:
    name: str  # id used in agent ops' `model` attribute ("llama-3-8b")
    kind: str  # one of MODEL_KINDS
    hidden_size: int
    intermediate_size: int  # per expert for MoE
    num_layers: int  # the decoder stack (encoder-only models: the encoder stack)
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    head_dim: int | None = None  # default hidden_size // num_heads
    max_position: int = 8192
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    gated_mlp: bool = True  # SwiGLU: gate, up and down projections; else up and down (GELU)
    tie_embeddings: bool = False
    num_experts: int = 1  # MoE: experts per layer (1 = dense)
    experts_per_token: int = 1
    default_dtype: str = "bf16"
    source: str = ""
    bias: bool = False  # projections carry biases and norms are LayerNorms with a bias (BERT, Whisper)
    learned_positions: bool = False  # a position table of max_position (and encoder_positions) × hidden rows
    shared_layers: bool = False  # ALBERT-style: one layer's weights run num_layers times
    encoder_layers: int = 0  # encoder-decoder models: an encoder stack of the same width (Whisper)
    encoder_positions: int = 0  # encoder input length per request (Whisper: 1500 frames = 30 s of audio)
    other_params: int = 0  # parameters outside the transformer stacks (conv front-end, vocoder)
    token_types: int = 0  # BERT: rows of the token-type (segment) embedding table
    # Llama-family variations (Hugging Face config names): biases on the q/k/v projections (Qwen2), on the
    # attention output (Llama's attention_bias), on the MLP projections (mlp_bias); RoPE frequency scaling as
    # the config's `rope_scaling` items, e.g. (("factor", 8.0), ("rope_type", "llama3"), ...)
    qkv_bias: bool = False
    attention_out_bias: bool = False
    mlp_bias: bool = False
    rope_scaling: tuple = ()

    # ---------------------------------------------------------------- shapes

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def attention_dim(self) -> int:
        """Width of the query (and attention output): num_heads · head_size."""
        return self.num_heads * self.head_size

    @property
    def kv_dim(self) -> int:
        """Width of K (and of V): num_kv_heads · head_size (smaller than attention_dim under GQA)."""
        return self.num_kv_heads * self.head_size

    @property
    def generative(self) -> bool:
        return self.kind in GENERATIVE_KINDS

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    def dtype_bytes(self, dtype: str | None = None) -> float:
        dtype = dtype or self.default_dtype
        if dtype not in BYTES_PER_ELEMENT:
            raise HetagentError(f"model {self.name!r}: unknown dtype {dtype!r}; valid: {', '.join(BYTES_PER_ELEMENT)}")
        return BYTES_PER_ELEMENT[dtype]

    # ---------------------------------------------------------------- parameters

    def attention_params(self) -> int:
        """Q, K, V and output projections (+ biases): 2·hidden·attention_dim + 2·hidden·kv_dim."""
        weights = 2 * self.hidden_size * self.attention_dim + 2 * self.hidden_size * self.kv_dim
        biases = self.attention_dim + 2 * self.kv_dim + self.hidden_size if self.bias else 0
        if not self.bias:
            biases += (self.attention_dim + 2 * self.kv_dim) * self.qkv_bias + self.hidden_size * self.attention_out_bias
        return weights + biases

    def expert_params(self) -> int:
        """One MLP (one expert of a MoE layer): 3·hidden·intermediate gated, 2·hidden·intermediate plain."""
        matrices = 3 if self.gated_mlp else 2
        weights = matrices * self.hidden_size * self.intermediate_size
        biases = (matrices - 1) * self.intermediate_size + self.hidden_size if self.bias or self.mlp_bias else 0
        return weights + biases

    def norm_params(self) -> int:
        return self.hidden_size * (2 if self.bias else 1)

    def router_params(self) -> int:
        return self.hidden_size * self.num_experts if self.is_moe else 0

    def decoder_layer_params(self, *, active: bool = False) -> int:
        """One decoder layer; `active` counts only the experts one token is routed to."""
        experts = self.experts_per_token if active else self.num_experts
        cross = self.attention_params() + self.norm_params() if self.encoder_layers else 0
        return self.attention_params() + cross + experts * self.expert_params() + self.router_params() + 2 * self.norm_params()

    def encoder_layer_params(self) -> int:
        return self.attention_params() + self.expert_params() + 2 * self.norm_params()

    def embedding_params(self) -> int:
        """Token table, LM head (unless tied or absent), learned position and token-type tables."""
        tables = (self.vocab_size + self.token_types) * self.hidden_size
        if self.generative and not self.tie_embeddings:
            tables += self.vocab_size * self.hidden_size
        if self.learned_positions:
            tables += (self.max_position + self.encoder_positions) * self.hidden_size
        return tables

    def param_count(self, *, active: bool = False) -> int:
        """Every parameter (`active`: those one token touches — MoE routes it to experts_per_token experts)."""
        decoder_layers = 1 if self.shared_layers else self.num_layers
        stacks = decoder_layers * self.decoder_layer_params(active=active) + self.norm_params()
        if self.encoder_layers:
            stacks += self.encoder_layers * self.encoder_layer_params() + self.norm_params()
        return self.embedding_params() + stacks + self.other_params

    def active_param_count(self) -> int:
        return self.param_count(active=True)

    def weight_bytes(self, dtype: str | None = None) -> float:
        return self.param_count() * self.dtype_bytes(dtype)

    # ---------------------------------------------------------------- KV cache and activations

    def kv_bytes_per_token(self, dtype: str | None = None) -> float:
        """K and V for every layer: 2 · layers · kv_heads · head_dim · bytes (Llama-3-8B bf16: 128 KiB)."""
        return 2 * self.num_layers * self.kv_dim * self.dtype_bytes(dtype)

    def cross_kv_bytes(self, dtype: str | None = None) -> float:
        """Encoder-decoder models: the cross-attention K and V of one request, fixed by the encoder length."""
        if not self.encoder_layers:
            return 0.0
        return self.encoder_positions * self.kv_bytes_per_token(dtype)

    def activation_bytes(self, tokens: int, dtype: str | None = None, tp: int = 1, sequences: int = 1) -> float:
        """Peak working set of one forward pass over `tokens` tokens of `sequences` sequences. Inference keeps no
        activations between layers, so this is one layer's: the residual stream and its normed copy, Q/K/V and
        the attention output, the MLP intermediate (gate and up) of the experts a token uses — the per-head and
        per-expert parts split over `tp` devices — plus fp32 logits for the last position of each sequence."""
        b = self.dtype_bytes(dtype)
        mlp = (2 if self.gated_mlp else 1) * self.intermediate_size * self.experts_per_token
        per_token = 2 * self.hidden_size + (2 * self.attention_dim + 2 * self.kv_dim + mlp) / tp
        logits = sequences * self.vocab_size * 4 / tp if self.generative else 0.0
        return tokens * per_token * b + logits

    # ---------------------------------------------------------------- FLOPs and bytes of a forward pass

    def prefill_flops(self, tokens: int, batch: int = 1) -> float:
        """FLOPs to process `batch` prompts of `tokens` tokens: ≈ 2·N·L + 2·layers·d·L² per prompt."""
        from hetagent.models.kernels import prefill_kernels

        return sum(k.total_flops for k in prefill_kernels(self, tokens, batch=batch, dtype=self.default_dtype))

    def decode_flops(self, context: int, batch: int = 1) -> float:
        """FLOPs of one decode step for `batch` sequences at `context` tokens: ≈ 2·N + 4·layers·d·ctx each."""
        from hetagent.models.kernels import decode_kernels

        return sum(k.total_flops for k in decode_kernels(self, context, batch=batch, dtype=self.default_dtype))

    def prefill_bytes(self, tokens: int, batch: int = 1, dtype: str | None = None) -> float:
        from hetagent.models.kernels import prefill_kernels

        return sum(k.total_bytes for k in prefill_kernels(self, tokens, batch=batch, dtype=dtype or self.default_dtype))

    def decode_bytes(self, context: int, batch: int = 1, dtype: str | None = None) -> float:
        """Bytes of one decode step: the weights it touches plus every sequence's KV cache read (+ activations)."""
        from hetagent.models.kernels import decode_kernels

        return sum(k.total_bytes for k in decode_kernels(self, context, batch=batch, dtype=dtype or self.default_dtype))

    def validate(self) -> None:
        """Raise `HetagentError` naming every field that makes the card inconsistent."""
        problems = []
        if self.kind not in MODEL_KINDS:
            problems.append(f"kind {self.kind!r} must be one of {', '.join(MODEL_KINDS)}")
        for attr in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "vocab_size",
                     "num_experts", "experts_per_token"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{attr} = {value!r} must be a positive integer")
        if not problems:
            if self.num_heads % self.num_kv_heads:
                problems.append(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")
            if self.experts_per_token > self.num_experts:
                problems.append(f"experts_per_token {self.experts_per_token} exceeds num_experts {self.num_experts}")
            if self.head_dim is None and self.hidden_size % self.num_heads:
                problems.append(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}; give head_dim")
        if self.encoder_layers and self.encoder_positions <= 0:
            problems.append("an encoder-decoder card needs encoder_positions > 0")
        self.dtype_bytes(self.default_dtype)
        if problems:
            raise HetagentError(f"model card {self.name!r}: " + "; ".join(problems))
