"""A Hugging Face model directory as hetagent reads it: `config.json`, `*.safetensors` (one file, or shards
listed by `model.safetensors.index.json`), checked tensor by tensor against the card the config gives.

Only the safetensors headers are read here (a JSON header after an 8-byte length, `spec/runtime.md`), so
checking a checkpoint needs neither torch nor the weights in memory. The Llama family is what the reference
decoder runs: Llama 2/3 (`attention_bias`, `mlp_bias`, `rope_scaling` llama3/linear), Mistral, Qwen2 (biased
q/k/v projections); tied or untied embeddings; bf16, fp16 or fp32 on disk. BERT (`BertModel`, absolute positions,
erf GELU) is the embedding encoder; Whisper (`WhisperForConditionalGeneration`) the speech-to-text model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.files import read_json
from hetagent.models.card import ModelCard

INDEX = "model.safetensors.index.json"
LLM_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
ENCODER_ARCHITECTURES = ("BertModel",)
STT_ARCHITECTURES = ("WhisperForConditionalGeneration",)
DISK_DTYPES = {"BF16": 2, "F16": 2, "F32": 4}  # safetensors dtype -> bytes per element


def checkpoint_card(directory: str | Path, name: str | None = None) -> ModelCard:
    """The card of the checkpoint in `directory` (named after the directory unless `name` is given)."""
    from hetagent.models.hf_config import card_from_hf_config

    directory = Path(directory)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise HetagentError(f"{directory}: no config.json (expected a Hugging Face model directory)")
    return card_from_hf_config(config_file, name or directory.name)


def checkpoint_json(directory: Path, file: str, what: str, *, required: bool = True) -> dict:
    """One of a checkpoint's JSON files (config.json, generation_config.json, preprocessor_config.json, ...) as a
    dict; a missing optional file is {}, anything else wrong an error naming the file."""
    path = Path(directory) / file
    if not required and not path.exists():
        return {}
    value = read_json(path, what)
    if not isinstance(value, dict):
        raise HetagentError(f"{path}: the {what} must be a JSON object")
    return value


def check_architecture(directory: Path, supported: tuple[str, ...] = LLM_ARCHITECTURES + ENCODER_ARCHITECTURES) -> None:
    """A checkpoint must be one hetagent runs: the config's `architectures` says which (and, for BERT, the
    variations the reference encoder does not cover: relative positions, another activation)."""
    file = directory / "config.json"
    config = read_json(file, "model config")
    architectures = config.get("architectures") or []
    if architectures and not set(architectures) & set(supported):
        raise HetagentError(f"{file}: architectures {architectures} are not supported; hetagent runs "
                            f"{', '.join(supported)}")
    if config.get("model_type") == "bert":
        for key, wanted in (("hidden_act", "gelu"), ("position_embedding_type", "absolute")):
            if config.get(key, wanted) != wanted:
                raise HetagentError(f"{file}: {key} {config[key]!r} is not supported for BERT; supported: {wanted!r}")


def read_header(file: Path) -> tuple[dict, int]:
    """A safetensors file's header (tensor name -> dtype, shape, data_offsets) and where its data starts."""
    try:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise HetagentError(f"{file}: not a readable safetensors file ({exc})") from None
    header.pop("__metadata__", None)
    return header, 8 + length


def shard_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the index's shards, else every `*.safetensors`."""
    index = directory / INDEX
    if index.exists():
        weight_map = read_json(index, "safetensors index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise HetagentError(f"{index}: 'weight_map' must map tensor names to shard files")
        files = sorted({directory / str(f) for f in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise HetagentError(f"{index}: shard(s) {', '.join(missing)} listed in weight_map are missing")
        return files
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise HetagentError(f"{directory}: no *.safetensors files (expected a Hugging Face model directory)")
    return files


def locate_tensors(directory: str | Path, expected: dict[str, tuple[int, ...]], model: str) -> dict[str, tuple[Path, dict]]:
    """name -> (file, header entry) for every expected tensor; a missing tensor, a wrong shape or an unsupported
    dtype is an error that names the file and the tensor."""
    directory = Path(directory)
    located: dict[str, tuple[Path, dict]] = {}
    for file in shard_files(directory):
        header, _ = read_header(file)
        for name, entry in header.items():
            if name not in expected:
                continue
            shape = tuple(entry.get("shape", ()))
            if shape != expected[name]:
                raise HetagentError(f"{file}: tensor {name!r} has shape {list(shape)}; model {model!r} needs "
                                    f"{list(expected[name])}")
            if entry.get("dtype") not in DISK_DTYPES:
                raise HetagentError(f"{file}: tensor {name!r} is {entry.get('dtype')}; supported on disk: "
                                    f"{', '.join(DISK_DTYPES)}")
            located[name] = (file, entry)
    missing = [name for name in expected if name not in located]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise HetagentError(f"{directory}: model {model!r} needs tensors that are missing: {shown}")
    return {name: located[name] for name in expected}
