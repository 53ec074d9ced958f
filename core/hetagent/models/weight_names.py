"""Weight names and shapes of the reference models, and checking a checkpoint directory against them.

Two architectures have reference functions: the Llama-architecture decoder (prefill, decode, embed) and the
BERT encoder (embed: mean-pooled, unit-length sentence embeddings, as all-MiniLM-L6-v2). Names are Hugging
Face's (`model.layers.0.self_attn.q_proj.weight`; BertModel's `encoder.layer.0.attention.self.query.weight`),
so a HF safetensors directory is read as is. Checking reads only the safetensors headers: it needs neither
torch nor the `safetensors` package.
"""

from __future__ import annotations

from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard


def is_bert(model: ModelCard) -> bool:
    """A BERT-style encoder: an embedding model with biases, LayerNorms, learned positions and a GELU MLP."""
    return (model.kind == "embedding" and model.bias and model.learned_positions and not model.gated_mlp
            and not model.shared_layers and not model.encoder_layers and not model.is_moe)


def reference_functions(model: ModelCard) -> tuple[str, ...]:
    """The model functions the reference implementation of `model`'s architecture has."""
    return ("embed",) if is_bert(model) else ("prefill", "extend", "decode", "embed")


def architecture_problem(model: ModelCard) -> str | None:
    """Why no reference implementation runs `model`, or None when one does (a dense Llama-architecture LLM, or
    a BERT encoder)."""
    if is_bert(model):
        return None
    if model.kind != "llm":
        return (f"model {model.name!r} is of kind {model.kind!r}; the reference models are Llama-architecture LLMs "
                "and BERT encoders")
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
    """Every weight the reference model reads, in a fixed order (the order exported functions take them in)."""
    problem = architecture_problem(model)
    if problem:
        raise HetagentError(problem)
    if is_bert(model):
        return _bert_shapes(model)
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


def _bert_shapes(model: ModelCard) -> dict[str, tuple[int, ...]]:
    """BertModel's tensors (its pooler excepted: mean pooling does not use it)."""
    hidden, inter, width = model.hidden_size, model.intermediate_size, model.attention_dim
    shapes = {"embeddings.word_embeddings.weight": (model.vocab_size, hidden),
              "embeddings.position_embeddings.weight": (model.max_position, hidden),
              "embeddings.token_type_embeddings.weight": (max(1, model.token_types), hidden),
              "embeddings.LayerNorm.weight": (hidden,), "embeddings.LayerNorm.bias": (hidden,)}
    for i in range(model.num_layers):
        p = f"encoder.layer.{i}."
        for projection in ("query", "key", "value"):
            shapes.update({f"{p}attention.self.{projection}.weight": (width, hidden),
                           f"{p}attention.self.{projection}.bias": (width,)})
        shapes.update({
            p + "attention.output.dense.weight": (hidden, width), p + "attention.output.dense.bias": (hidden,),
            p + "attention.output.LayerNorm.weight": (hidden,), p + "attention.output.LayerNorm.bias": (hidden,),
            p + "intermediate.dense.weight": (inter, hidden), p + "intermediate.dense.bias": (inter,),
            p + "output.dense.weight": (hidden, inter), p + "output.dense.bias": (hidden,),
            p + "output.LayerNorm.weight": (hidden,), p + "output.LayerNorm.bias": (hidden,),
        })
    return shapes


def locate_weights(model: ModelCard, directory: str | Path) -> dict[str, Path]:
    """The file holding each weight of `model` in a HF-layout directory (`hetagent.models.hf_checkpoint`: one
    file or index-listed shards); a missing tensor, a wrong shape or dtype is an error that names it."""
    return {name: file for name, (file, _) in checkpoint_tensors(model, directory).items()}


def checkpoint_tensors(model: ModelCard, directory: str | Path) -> dict[str, tuple[Path, dict]]:
    """name -> (file, safetensors header entry) of every weight of `model` in a HF-layout directory, its
    architecture checked: a speech-to-text model is a Whisper checkpoint, anything else a reference model's."""
    from hetagent.files import read_json
    from hetagent.models.hf_checkpoint import STT_ARCHITECTURES, check_architecture, locate_tensors

    directory = Path(directory)
    if model.kind == "stt":
        check_architecture(directory, STT_ARCHITECTURES)
        mels = int(read_json(directory / "config.json", "model config").get("num_mel_bins", 80))
        shapes = whisper_shapes(model, mels)
    else:
        if (directory / "config.json").is_file():
            check_architecture(directory)
        shapes = weight_shapes(model)
    return locate_tensors(directory, shapes, model.name)


def whisper_shapes(model: ModelCard, mels: int) -> dict[str, tuple[int, ...]]:
    """WhisperForConditionalGeneration's tensors (its LM head is the token table, tied): a two-convolution
    front-end over `mels` mel bands, the encoder stack, the decoder stack with cross-attention. Whisper's key
    projections have no bias."""
    d, inner = model.hidden_size, model.intermediate_size

    def attention(prefix: str) -> dict[str, tuple[int, ...]]:
        shapes = {f"{prefix}.{p}_proj.weight": (d, d) for p in ("q", "k", "v", "out")}
        shapes.update({f"{prefix}.{p}_proj.bias": (d,) for p in ("q", "v", "out")})
        return shapes

    def norm(name: str) -> dict[str, tuple[int, ...]]:
        return {name + ".weight": (d,), name + ".bias": (d,)}

    def mlp(prefix: str) -> dict[str, tuple[int, ...]]:
        return {prefix + "fc1.weight": (inner, d), prefix + "fc1.bias": (inner,), prefix + "fc2.weight": (d, inner),
                prefix + "fc2.bias": (d,), **norm(prefix + "final_layer_norm")}

    shapes = {"model.encoder.conv1.weight": (d, mels, 3), "model.encoder.conv1.bias": (d,),
              "model.encoder.conv2.weight": (d, d, 3), "model.encoder.conv2.bias": (d,),
              "model.encoder.embed_positions.weight": (model.encoder_positions, d)}
    for i in range(model.encoder_layers):
        p = f"model.encoder.layers.{i}."
        shapes.update({**attention(p + "self_attn"), **norm(p + "self_attn_layer_norm"), **mlp(p)})
    shapes.update(norm("model.encoder.layer_norm"))
    shapes.update({"model.decoder.embed_tokens.weight": (model.vocab_size, d),
                   "model.decoder.embed_positions.weight": (model.max_position, d)})
    for i in range(model.num_layers):
        p = f"model.decoder.layers.{i}."
        shapes.update({**attention(p + "self_attn"), **norm(p + "self_attn_layer_norm"), **attention(p + "encoder_attn"),
                       **norm(p + "encoder_attn_layer_norm"), **mlp(p)})
    shapes.update(norm("model.decoder.layer_norm"))
    return shapes
