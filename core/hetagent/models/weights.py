"""Weight names and shapes of the Llama-architecture decoder, and checking a checkpoint directory against them.

Names are Hugging Face Llama's (`model.layers.0.self_attn.q_proj.weight`), so a HF safetensors directory is
read as is. Checking reads only the safetensors headers: it needs the `safetensors` package, not torch.
"""

from __future__ import annotations

from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard


def architecture_problem(model: ModelCard) -> str | None:
    """Why the reference decoder cannot run `model`, or None when it can (a dense Llama-architecture LLM)."""
    if model.kind != "llm":
        return f"model {model.name!r} is of kind {model.kind!r}; the reference decoder covers Llama-architecture LLMs"
    unlike_llama = [
        what for what, present in (
            ("mixture of experts", model.num_experts != 1),
            ("ungated MLP", not model.gated_mlp),
            ("biases and LayerNorms", model.bias),
            ("learned positions", model.learned_positions),
            ("shared layers", model.shared_layers),
            ("an encoder stack", model.encoder_layers > 0),
        ) if present
    ]
    if unlike_llama:
        return f"model {model.name!r} has {', '.join(unlike_llama)}; the reference decoder is a dense Llama"
    return None


def weight_shapes(model: ModelCard) -> dict[str, tuple[int, ...]]:
    """Every weight the decoder reads, in a fixed order (the order exported functions take them in)."""
    problem = architecture_problem(model)
    if problem:
        raise HetagentError(problem)
    hidden, head, inter = model.hidden_size, model.head_size, model.intermediate_size
    shapes = {"model.embed_tokens.weight": (model.vocab_size, hidden)}
    for i in range(model.num_layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (model.num_heads * head, hidden),
            p + "self_attn.k_proj.weight": (model.num_kv_heads * head, hidden),
            p + "self_attn.v_proj.weight": (model.num_kv_heads * head, hidden),
            p + "self_attn.o_proj.weight": (hidden, model.num_heads * head),
            p + "post_attention_layernorm.weight": (hidden,),
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
        })
    shapes["model.norm.weight"] = (hidden,)
    if not model.tie_embeddings:
        shapes["lm_head.weight"] = (model.vocab_size, hidden)
    return shapes


def locate_weights(model: ModelCard, directory: str | Path) -> dict[str, Path]:
    """The file holding each weight of `model` in a HF-layout directory of `*.safetensors`; a missing tensor or
    one of the wrong shape is an error that names it."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise HetagentError("reading model weights needs safetensors: `pip install 'hetagent[torch]'`") from None
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise HetagentError(f"{directory}: no *.safetensors files (expected a Hugging Face model directory)")
    expected = weight_shapes(model)
    located: dict[str, Path] = {}
    for file in files:
        with safe_open(str(file), framework="numpy") as f:
            for name in f.keys():
                if name in expected:
                    shape = tuple(f.get_slice(name).get_shape())
                    if shape != expected[name]:
                        raise HetagentError(f"{file}: tensor {name!r} has shape {list(shape)}; model "
                                            f"{model.name!r} needs {list(expected[name])}")
                    located[name] = file
    missing = [name for name in expected if name not in located]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise HetagentError(f"{directory}: model {model.name!r} needs tensors that are missing: {shown}")
    return {name: located[name] for name in expected}
