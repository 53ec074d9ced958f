"""Built-in model cards, by name. Add a card here (with its source) to make a model known everywhere."""

from __future__ import annotations

import dataclasses
import difflib

from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard
from hetagent.models.hf_config import card_from_hf_config


def _with_total_params(card: ModelCard, total: int) -> ModelCard:
    """The card with `other_params` set so its parameter count is the published `total`."""
    return dataclasses.replace(card, other_params=total - card.param_count())


def _llama(name: str, source: str, **shape) -> ModelCard:
    return ModelCard(name=name, kind="llm", source=source, **shape)


_CARDS = (
    # A tiny Llama-architecture decoder with deterministic random weights: what the tests, the compiler and the
    # runtime run on a CPU-only machine. Same code path as the real models, small enough to compile in seconds.
    ModelCard(
        name="tiny-llama", kind="llm", hidden_size=256, intermediate_size=688, num_layers=2, num_heads=8,
        num_kv_heads=2, vocab_size=4096, max_position=2048, default_dtype="fp32",
        source="hetagent: a small Llama-3-shaped test configuration (GQA 4:1, SwiGLU, RoPE)",
    ),
    # The speech stand-ins (hetagent_cpu.speech), as the planner sees them: stacks of their width with no attention
    # worth counting (one head; their MLP blocks carry the work). Small next to any fixed per-call cost.
    ModelCard(
        name="tiny-stt", kind="stt", hidden_size=256, intermediate_size=1024, num_layers=2, num_heads=1,
        num_kv_heads=1, vocab_size=256, max_position=2048, gated_mlp=False, bias=True, encoder_layers=2,
        encoder_positions=50, default_dtype="fp32",
        source="hetagent_cpu.speech tiny-stt: 80 bands -> two residual MLP blocks 256 -> 1024 -> 256 -> byte logits",
    ),
    ModelCard(
        name="tiny-tts", kind="tts", hidden_size=128, intermediate_size=512, num_layers=2, num_heads=1,
        num_kv_heads=1, vocab_size=256, max_position=2048, gated_mlp=False, bias=True, default_dtype="fp32",
        source="hetagent_cpu.speech tiny-tts: byte embeddings -> two MLP blocks 128 -> 512 -> 128 -> 160 samples",
    ),
    # A ~620 MB (fp32) Llama-architecture decoder with random weights: big enough that a decode step streams its
    # weights from DRAM rather than cache (benchmarks/bench_runtime.py's memory-bandwidth figure).
    ModelCard(
        name="small-llama", kind="llm", hidden_size=1024, intermediate_size=2816, num_layers=8, num_heads=16,
        num_kv_heads=4, vocab_size=32000, max_position=2048, default_dtype="fp32",
        source="hetagent: a benchmark configuration (~155 M parameters, GQA 4:1, SwiGLU, RoPE)",
    ),
    _llama(
        "llama-3-8b", "meta-llama/Meta-Llama-3-8B config.json (8.03 B parameters)",
        hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8, vocab_size=128256,
        max_position=8192, rope_theta=500000.0,
    ),
    _llama(
        "llama-3-70b", "meta-llama/Meta-Llama-3-70B config.json (70.6 B parameters)",
        hidden_size=8192, intermediate_size=28672, num_layers=80, num_heads=64, num_kv_heads=8, vocab_size=128256,
        max_position=8192, rope_theta=500000.0,
    ),
    _llama(
        "llama-3.1-405b", "meta-llama/Llama-3.1-405B config.json (405 B parameters)",
        hidden_size=16384, intermediate_size=53248, num_layers=126, num_heads=128, num_kv_heads=8,
        vocab_size=128256, max_position=131072, rope_theta=500000.0,
    ),
    _llama(
        "llama-2-7b", "meta-llama/Llama-2-7b-hf config.json (6.74 B parameters)",
        hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32, num_kv_heads=32, vocab_size=32000,
        max_position=4096, rope_theta=10000.0, default_dtype="fp16",
    ),
    _llama(
        "llama-2-70b", "meta-llama/Llama-2-70b-hf config.json (69.0 B parameters)",
        hidden_size=8192, intermediate_size=28672, num_layers=80, num_heads=64, num_kv_heads=8, vocab_size=32000,
        max_position=4096, rope_theta=10000.0, default_dtype="fp16",
    ),
    _llama(
        "mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1 config.json (46.7 B parameters, 12.9 B active per token)",
        hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8, vocab_size=32000,
        max_position=32768, rope_theta=1000000.0, num_experts=8, experts_per_token=2,
    ),
    ModelCard(
        name="whisper-large-v3", kind="stt", hidden_size=1280, intermediate_size=5120, num_layers=32,
        num_heads=20, num_kv_heads=20, vocab_size=51866, max_position=448, gated_mlp=False, tie_embeddings=True,
        bias=True, learned_positions=True, encoder_layers=32, encoder_positions=1500, default_dtype="fp16",
        # conv front-end: Conv1d(128 mels -> 1280, k=3) and Conv1d(1280 -> 1280, k=3), weights and biases
        other_params=3 * 128 * 1280 + 1280 + 3 * 1280 * 1280 + 1280,
        source="openai/whisper-large-v3 config.json (1.55 B parameters); 1500 encoder frames = 30 s of audio",
    ),
    # The PL-BERT text encoder (ALBERT: one layer's weights run 12 times) is the transformer stack; the rest of
    # StyleTTS 2 (text encoder, prosody predictor, iSTFTNet decoder) is the published total minus it.
    _with_total_params(
        ModelCard(
            name="kokoro-82m", kind="tts", hidden_size=768, intermediate_size=2048, num_layers=12, num_heads=12,
            num_kv_heads=12, vocab_size=178, max_position=512, gated_mlp=False, bias=True, learned_positions=True,
            shared_layers=True, default_dtype="fp32",
            source="hexgrad/Kokoro-82M config.json (plbert: 768 hidden, 12 shared layers) and model card "
            "(81,763,410 parameters)",
        ),
        81_763_410,
    ),
    ModelCard(
        name="all-minilm-l6-v2", kind="embedding", hidden_size=384, intermediate_size=1536, num_layers=6,
        num_heads=12, num_kv_heads=12, vocab_size=30522, max_position=512, gated_mlp=False, bias=True,
        learned_positions=True, norm_eps=1e-12, default_dtype="fp32",
        source="sentence-transformers/all-MiniLM-L6-v2 config.json (22.7 M parameters incl. an unused 0.15 M pooler)",
    ),
)

CARDS: dict[str, ModelCard] = {c.name: c for c in _CARDS}


# Directories of Hugging Face checkpoints (`--model-dir`): `DIR/<name>/config.json` makes `name` a model, whatever
# it is called. The process that prepares a run and every worker register the run's directory.
_MODEL_DIRS: list = []
_CHECKPOINTS: dict = {}  # model name -> its directory, given one by one (`compile --weights MODEL=DIR`)
_CHECKPOINT_CARDS: dict = {}


def use_model_dir(directory) -> None:
    """Make the checkpoints under `directory` known by their directory names (a built-in name still wins)."""
    from pathlib import Path

    directory = Path(directory).resolve()
    if directory not in _MODEL_DIRS:
        _MODEL_DIRS.insert(0, directory)


def use_checkpoint(name: str, directory) -> None:
    """Make the checkpoint in `directory` known as model `name`."""
    from pathlib import Path

    _CHECKPOINTS[name] = Path(directory).resolve()


def checkpoint_dir(name: str):
    """The registered checkpoint directory of model `name`, or None."""
    if name in _CHECKPOINTS:
        return _CHECKPOINTS[name]
    for directory in _MODEL_DIRS:
        if (directory / name / "config.json").is_file():
            return directory / name
    return None


def card(name: str) -> ModelCard:
    """The card called `name`: a checkpoint's (its config.json under a registered model directory) or a built-in
    one; a clear error naming the close matches and the known models."""
    if (directory := checkpoint_dir(name)) is not None:
        if (directory, name) not in _CHECKPOINT_CARDS:
            from hetagent.models.hf_checkpoint import checkpoint_card

            _CHECKPOINT_CARDS[directory, name] = checkpoint_card(directory, name)
        return _CHECKPOINT_CARDS[directory, name]
    try:
        return CARDS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(CARDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise HetagentError(f"unknown model {name!r}{hint} Known models: {', '.join(sorted(CARDS))}") from None


def resolve(name_or_path: str) -> ModelCard:
    """A built-in card by name, or a card read from a Hugging Face config.json (or a directory holding one)."""
    from pathlib import Path

    if name_or_path not in CARDS and (name_or_path.endswith(".json") or Path(name_or_path).is_dir()):
        return card_from_hf_config(name_or_path)
    return card(name_or_path)
