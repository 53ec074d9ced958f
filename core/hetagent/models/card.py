"""`ModelCard`: the architecture of a model, from which sizes, FLOPs and bytes follow.

A card describes a decoder-only transformer (Llama family, optionally mixture-of-experts) by its shapes;
encoder-decoder and non-LLM models (speech, TTS, embeddings) use the same fields for their transformer stacks
plus `kind`. Every card names its source (a Hugging Face config, a paper).
"""

from __future__ import annotations

from dataclasses import dataclass

from hetagent.errors import HetagentError

BYTES_PER_ELEMENT = {"fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "fp4": 0.5}
MODEL_KINDS = ("llm", "stt", "tts", "embedding")


@dataclass(frozen=True)
class ModelCard:
    name: str  # id used in agent ops' `model` attribute ("llama-3-8b")
    kind: str  # one of MODEL_KINDS
    hidden_size: int
    intermediate_size: int  # per expert for MoE
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    head_dim: int | None = None  # default hidden_size // num_heads
    max_position: int = 8192
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    gated_mlp: bool = True  # SwiGLU: gate, up and down projections
    tie_embeddings: bool = False
    num_experts: int = 1  # MoE: experts per layer (1 = dense)
    experts_per_token: int = 1
    default_dtype: str = "bf16"
    source: str = ""

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def dtype_bytes(self, dtype: str | None = None) -> float:
        dtype = dtype or self.default_dtype
        if dtype not in BYTES_PER_ELEMENT:
            raise HetagentError(f"model {self.name!r}: unknown dtype {dtype!r}; valid: {', '.join(BYTES_PER_ELEMENT)}")
        return BYTES_PER_ELEMENT[dtype]

    def kv_bytes_per_token(self, dtype: str | None = None) -> float:
        """K and V for every layer: 2 · layers · kv_heads · head_dim · bytes (Llama-3-8B bf16: 128 KiB)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_size * self.dtype_bytes(dtype)
