"""Read a Hugging Face `config.json` into a `ModelCard`.

Config files spell the same shape several ways (`hidden_size` / `d_model` / `n_embd`, ...); each card field
lists the keys it accepts, first match wins. The model family (`model_type`) decides the kind and the
conventions a config leaves implicit: BERT-style encoders use biased LayerNorms, learned positions and GELU;
Whisper is an encoder-decoder with a two-convolution front-end over mel frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hetagent.errors import HetagentError
from hetagent.files import read_json
from hetagent.models.card import ModelCard

# card field -> config keys that may hold it, in order of preference
_KEYS = {
    "hidden_size": ("hidden_size", "d_model", "n_embd", "dim"),
    "intermediate_size": ("intermediate_size", "decoder_ffn_dim", "ffn_dim", "n_inner", "hidden_dim"),
    "num_layers": ("num_hidden_layers", "decoder_layers", "n_layer", "n_layers", "num_layers"),
    "num_heads": ("num_attention_heads", "decoder_attention_heads", "n_head", "n_heads"),
    "vocab_size": ("vocab_size",),
}
_OPTIONAL_KEYS = {
    "num_kv_heads": ("num_key_value_heads", "n_kv_heads", "num_kv_heads"),
    "head_dim": ("head_dim",),
    "max_position": ("max_position_embeddings", "max_target_positions", "n_positions"),
    "rope_theta": ("rope_theta",),
    "norm_eps": ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"),
    "tie_embeddings": ("tie_word_embeddings",),
    "num_experts": ("num_local_experts", "num_experts", "n_routed_experts"),
    "experts_per_token": ("num_experts_per_tok", "num_experts_per_token", "moe_top_k"),
}
_ENCODER_FAMILIES = ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "albert", "electra")
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float8_e4m3fn": "fp8"}
_GATED_ACTIVATIONS = ("silu", "swiglu", "swish")


def card_from_hf_config(path: str | Path, name: str | None = None) -> ModelCard:
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    config = read_json(path, "model config")
    if not isinstance(config, dict):
        raise HetagentError(f"{path}: a config.json must hold a JSON object")
    config = {**config.get("text_config", {}), **config}  # multimodal configs nest the language model
    missing = [f"{field} (one of {', '.join(keys)})" for field, keys in _KEYS.items() if _find(config, keys) is None]
    if missing:
        raise HetagentError(f"{path}: missing field(s) {'; '.join(missing)}")
    fields: dict[str, Any] = {field: _find(config, keys) for field, keys in _KEYS.items()}
    fields.update({f: v for f, keys in _OPTIONAL_KEYS.items() if (v := _find(config, keys)) is not None})
    family = str(config.get("model_type", "")).lower()
    fields["num_kv_heads"] = fields.get("num_kv_heads") or fields["num_heads"]
    fields["experts_per_token"] = fields.get("experts_per_token") or 1
    fields["num_experts"] = fields.get("num_experts") or 1
    fields["default_dtype"] = _DTYPES.get(str(config.get("torch_dtype") or config.get("dtype")), "bf16")
    activation = str(config.get("hidden_act") or config.get("activation_function") or "silu").lower()
    fields["gated_mlp"] = activation in _GATED_ACTIVATIONS
    fields["bias"] = bool(config.get("attention_bias", False))
    if family in _ENCODER_FAMILIES:
        fields.update(kind="embedding", bias=True, learned_positions=True, token_types=config.get("type_vocab_size", 0))
    elif family == "whisper":
        d, mels = fields["hidden_size"], config.get("num_mel_bins", 80)
        fields.update(
            kind="stt", bias=True, learned_positions=True, tie_embeddings=True,
            num_layers=config.get("decoder_layers", fields["num_layers"]),  # num_hidden_layers is the encoder's
            encoder_layers=config.get("encoder_layers", fields["num_layers"]),
            encoder_positions=config.get("max_source_positions", 1500),
            # two 3-wide convolutions over mel frames: mels -> d, then d -> d (weights + biases)
            other_params=3 * mels * d + d + 3 * d * d + d,
        )
    else:
        fields["kind"] = "llm"
        attention_bias = bool(config.get("attention_bias", False))
        fields.update(bias=False, qkv_bias=attention_bias or family == "qwen2", attention_out_bias=attention_bias,
                      mlp_bias=bool(config.get("mlp_bias", False)))
        rope = _rope(config, path)
        if "rope_theta" in rope:
            fields["rope_theta"] = float(rope.pop("rope_theta"))
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            fields["rope_scaling"] = tuple(sorted(rope.items()))
    card = ModelCard(
        name=name or str(config.get("_name_or_path") or path.parent.name).split("/")[-1].lower(),
        source=f"Hugging Face config {path}",
        **fields,
    )
    try:
        card.validate()
    except HetagentError as exc:
        raise HetagentError(f"{path}: {exc}") from None
    return card


_ROPE_TYPES = ("default", "linear", "llama3")


def _rope(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """RoPE parameters: `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5, with the theta)."""
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in _ROPE_TYPES:
        raise HetagentError(f"{path}: rope_scaling type {kind!r} is not supported; supported: {', '.join(_ROPE_TYPES)}")
    rope.pop("type", None)
    rope["rope_type"] = kind
    return rope


def _find(config: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None
