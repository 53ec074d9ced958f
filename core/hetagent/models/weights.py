"""Weight names and shapes of the Llama-architecture decoder, and checking a checkpoint directory against them.

Names are Hugging Face Llama's (`model.layers.0.self_attn.q_proj.weight`), so a HF safetensors directory is
read as is. Checking reads only the safetensors headers: it needs neither torch nor the `safetensors` package.
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
        if model.qkv_bias:
            shapes.update({p + "self_attn.q_proj.bias": (model.num_heads * head,),
                           p + "self_attn.k_proj.bias": (model.num_kv_heads * head,),
                           p + "self_attn.v_proj.bias": (model.num_kv_heads * head,)})
        if model.attention_out_bias:
            shapes[p + "self_attn.o_proj.bias"] = (hidden,)
        if model.mlp_bias:
            shapes.update({p + "mlp.gate_proj.bias": (inter,), p + "mlp.up_proj.bias": (inter,),
                           p + "mlp.down_proj.bias": (hidden,)})
    shapes["model.norm.weight"] = (hidden,)
    if not model.tie_embeddings:
        shapes["lm_head.weight"] = (model.vocab_size, hidden)
    return shapes


def locate_weights(model: ModelCard, directory: str | Path) -> dict[str, Path]:
    """The file holding each weight of `model` in a HF-layout directory (`hetagent.models.hf_checkpoint`: one
    file or index-listed shards); a missing tensor, a wrong shape or dtype is an error that names it."""
    from hetagent.models.hf_checkpoint import check_architecture, locate_tensors

    directory = Path(directory)
    if (directory / "config.json").is_file():
        check_architecture(directory)
    return {name: file for name, (file, _) in locate_tensors(directory, weight_shapes(model), model.name).items()}
