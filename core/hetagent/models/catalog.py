"""Built-in model cards, by name. Add a card here (with its source) to make a model known everywhere."""

from __future__ import annotations

import difflib

from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard

_CARDS = (
    # A tiny Llama-architecture decoder with deterministic random weights: what the tests, the compiler and the
    # runtime run on a CPU-only machine. Same code path as the real models, small enough to compile in seconds.
    ModelCard(
        name="tiny-llama", kind="llm", hidden_size=256, intermediate_size=688, num_layers=2, num_heads=8,
        num_kv_heads=2, vocab_size=4096, max_position=2048, default_dtype="fp32",
        source="hetagent: a small Llama-3-shaped test configuration (GQA 4:1, SwiGLU, RoPE)",
    ),
    ModelCard(
        name="llama-3-8b", kind="llm", hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32,
        num_kv_heads=8, vocab_size=128256, max_position=8192, rope_theta=500000.0,
        source="meta-llama/Meta-Llama-3-8B config.json",
    ),
)

CARDS: dict[str, ModelCard] = {c.name: c for c in _CARDS}


def card(name: str) -> ModelCard:
    """The built-in card called `name`; a clear error naming the close matches and the known models."""
    try:
        return CARDS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(CARDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise HetagentError(f"unknown model {name!r}{hint} Known models: {', '.join(sorted(CARDS))}") from None
