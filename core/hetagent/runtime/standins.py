"""Which model actually runs for each model an agent names: the model map.

An agent names production models (llama-3-8b, whisper-large-v3, kokoro-82m). A node runs a model for real only
when its checkpoint is given (`--model-dir DIR` holding the Hugging Face directory `DIR/<model>/`: config.json,
safetensors, tokenizer; any name); every other model is
substituted by a tiny stand-in with deterministic random weights, by kind:

    llm, embedding  -> tiny-llama (its compiled prefill/decode/embed kernels; fp32)
    stt             -> tiny-stt   (a small random-weight speech encoder + byte head, hetagent_cpu.speech)
    tts             -> tiny-tts   (a small random-weight text-to-waveform network, hetagent_cpu.speech)

`--model-map FROM=TO` overrides an entry. The rewrite happens on the agent before compiling, so kernels, shapes
and the report all name the model that really runs; the report lists every substitution.
"""

from __future__ import annotations

from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.models.catalog import CARDS

TINY_LLM = "tiny-llama"
SPEECH_STANDINS = {"stt": "tiny-stt", "tts": "tiny-tts"}
MODEL_ATTRS = ("model", "embed_model")


def _kind(model: str, op: str) -> str:
    if op == "audio.stt":
        return "stt"
    if op == "audio.tts":
        return "tts"
    return CARDS[model].kind if model in CARDS else "llm"


def model_map(named: dict[str, str], model_dir: Path | None, overrides: dict[str, str]) -> dict[str, str]:
    """For each model the agent names (model -> the op naming it), the model that runs."""
    mapping = {}
    for model, op in named.items():
        if model in overrides:
            mapping[model] = overrides[model]
        elif model_dir is not None and (model_dir / model).is_dir():
            mapping[model] = model
        else:
            mapping[model] = SPEECH_STANDINS.get(_kind(model, op), TINY_LLM)
    unknown = [target for target in mapping.values() if target not in CARDS and target not in SPEECH_STANDINS.values()
               and not (model_dir is not None and (model_dir / target / "config.json").is_file())]
    if unknown:
        raise HetagentError(f"--model-map: unknown model(s) {', '.join(sorted(set(unknown)))}; known: "
                            f"{', '.join(sorted([*CARDS, *SPEECH_STANDINS.values()]))}")
    return mapping


def named_models(module) -> dict[str, str]:
    """model id -> the first op naming it, over every op of the module."""
    from hetagent.compiler.place import agent_ops

    named = {}
    for op in agent_ops(module):
        for key in MODEL_ATTRS:
            if key in op.attributes:
                named.setdefault(op.attributes[key].value, op.name)
    return named


def substitute(module, mapping: dict[str, str]) -> None:
    """Rewrite model ids in place; a substituted LLM runs in its stand-in's own dtype."""
    from iree.compiler import ir

    from hetagent.compiler.place import agent_ops

    with module.context:
        for op in agent_ops(module):
            for key in MODEL_ATTRS:
                if key in op.attributes:
                    model = op.attributes[key].value
                    target = mapping.get(model, model)
                    if target != model:
                        op.attributes[key] = ir.StringAttr.get(target)
                        if "dtype" in op.attributes and target in CARDS:
                            op.attributes["dtype"] = ir.StringAttr.get(CARDS[target].default_dtype)
