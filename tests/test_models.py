"""Model cards: parameter counts against published sizes, FLOPs, bytes and KV sizes against hand arithmetic."""

import json

import pytest

from hetagent.errors import HetagentError
from hetagent.models import CARDS, card, resolve
from hetagent.models.hf_config import card_from_hf_config
from hetagent.models.kernels import decode_kernels, experts_touched, prefill_kernels

KIB = 1024

# Published parameter counts (model cards / papers): name -> (total, active per token)
PUBLISHED = {
    "llama-3-8b": (8.03e9, 8.03e9),
    "llama-3-70b": (70.6e9, 70.6e9),
    "llama-3.1-405b": (405e9, 405e9),
    "llama-2-7b": (6.74e9, 6.74e9),
    "llama-2-70b": (68.98e9, 68.98e9),
    "mixtral-8x7b": (46.7e9, 12.9e9),
    "whisper-large-v3": (1.55e9, 1.55e9),
    "kokoro-82m": (81.8e6, 81.8e6),
    "all-minilm-l6-v2": (22.7e6, 22.7e6),
}

LLAMA_3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 8192, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "hidden_act": "silu",
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_published_sizes(name):
    total, active = PUBLISHED[name]
    model = card(name)
    model.validate()
    assert model.param_count() == pytest.approx(total, rel=0.01)
    assert model.active_param_count() == pytest.approx(active, rel=0.01)


def test_every_built_in_card_is_valid_and_named_by_its_source():
    assert {"tiny-llama", *PUBLISHED} <= set(CARDS)
    for model in CARDS.values():
        model.validate()
        assert model.source


def test_kv_bytes_per_token_by_hand():
    # 2 (K and V) · layers · kv_heads · head_dim · bytes
    assert card("llama-3-8b").kv_bytes_per_token("bf16") == 2 * 32 * 8 * 128 * 2 == 128 * KIB
    assert card("llama-3-70b").kv_bytes_per_token("bf16") == 2 * 80 * 8 * 128 * 2 == 320 * KIB
    assert card("llama-3-70b").kv_bytes_per_token("fp8") == 160 * KIB
    assert card("llama-2-7b").kv_bytes_per_token("fp16") == 512 * KIB  # no GQA


def test_weight_bytes_per_dtype():
    model = card("llama-3-8b")
    assert model.weight_bytes("bf16") == 2 * model.param_count()
    assert model.weight_bytes("fp8") == model.param_count()
    assert model.weight_bytes("fp4") == model.param_count() / 2


# Llama-3-8B: matmul parameters one token runs through in the layers (Q, K, V, O and the SwiGLU MLP)
LAYER_MATMUL_PARAMS = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
LM_HEAD = 4096 * 128256


def test_prefill_flops_by_hand():
    # 2·N·L for the layers + causal attention 2·layers·d·L² + the LM head on the last prompt token
    tokens = 512
    expected = 2 * LAYER_MATMUL_PARAMS * tokens + 2 * 32 * 4096 * tokens**2 + 2 * LM_HEAD
    assert LAYER_MATMUL_PARAMS == 6_979_321_856
    assert card("llama-3-8b").prefill_flops(tokens) == pytest.approx(expected, rel=1e-12)
    assert card("llama-3-8b").prefill_flops(tokens, batch=4) == pytest.approx(4 * expected, rel=1e-12)


def test_decode_flops_and_bytes_by_hand():
    model, context = card("llama-3-8b"), 1000
    # 2·N + 4·layers·d·ctx per token (the new token attends to ctx + 1 keys, itself included)
    expected = 2 * (LAYER_MATMUL_PARAMS + LM_HEAD) + 4 * 32 * 4096 * (context + 1)
    assert model.decode_flops(context) == pytest.approx(expected, rel=1e-12)
    # bytes per step = the weights it multiplies by + the KV cache read; activations add a little
    weights_and_kv = (LAYER_MATMUL_PARAMS + LM_HEAD) * 2 + (context + 1) * 128 * KIB
    assert model.decode_bytes(context, dtype="bf16") == pytest.approx(weights_and_kv, rel=0.002)


def test_moe_routing_touches_few_experts_when_decoding_and_all_when_prefilling():
    model = card("mixtral-8x7b")
    assert experts_touched(8, 2, 1) == pytest.approx(2)
    assert experts_touched(8, 2, 4096) == pytest.approx(8)
    one = {k.name: k for k in decode_kernels(model, 100, batch=1, dtype="bf16")}
    expert_weights = 3 * 4096 * 14336 * 2
    assert one["mlp_up"].bytes + one["mlp_down"].bytes == pytest.approx(2 * expert_weights, rel=0.01)
    # FLOPs follow the active parameters: attention, 2 of 8 experts and the router per layer, plus the LM head
    active_matmul = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 2 * 3 * 4096 * 14336 + 4096 * 8) + 4096 * 32000
    assert model.decode_flops(0) == pytest.approx(2 * active_matmul + 4 * 32 * 4096 * 1, rel=1e-12)


def test_tensor_parallel_splits_heads_and_mlp():
    model = card("llama-3-70b")
    whole = {k.name: k for k in prefill_kernels(model, 128, dtype="bf16")}
    split = {k.name: k for k in prefill_kernels(model, 128, dtype="bf16", tp=4)}
    assert split["mlp_up"].flops == pytest.approx(whole["mlp_up"].flops / 4)
    assert split["qkv_proj"].flops == pytest.approx(whole["qkv_proj"].flops / 4)
    assert "mlp_allreduce" in split and "mlp_allreduce" not in whole
    assert split["mlp_allreduce"].bytes == 128 * 8192 * 2


def test_encoder_decoder_and_encoder_only_cards():
    whisper = card("whisper-large-v3")
    names = [k.name for k in prefill_kernels(whisper, 4, dtype="fp16")]
    assert "cross_kv_proj" in names and "cross_attention" in names and "other" in names
    # the encoder always sees 1500 frames: prefill is dominated by it, not by the 4 prompt tokens
    encoder_flops = 2 * 32 * whisper.encoder_layer_params() * 1500
    assert whisper.prefill_flops(4) > encoder_flops
    assert whisper.cross_kv_bytes("fp16") == 1500 * whisper.kv_bytes_per_token("fp16")
    assert whisper.decode_flops(10) > 0
    minilm = card("all-minilm-l6-v2")
    assert minilm.prefill_flops(128) > 2 * 6 * minilm.encoder_layer_params() * 128 * 0.9
    with pytest.raises(HetagentError, match="no decode phase"):
        minilm.decode_flops(10)


def test_activation_memory_grows_with_tokens_and_shrinks_with_tp():
    model = card("llama-3-8b")
    assert model.activation_bytes(4096, "bf16") > model.activation_bytes(512, "bf16") > 0
    assert model.activation_bytes(4096, "bf16", tp=4) < model.activation_bytes(4096, "bf16")


def test_unknown_model_suggests_a_close_name():
    with pytest.raises(HetagentError, match="did you mean 'llama-3-8b'"):
        card("llama-3-8")


def test_hf_config_reads_into_the_same_card(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA_3_8B_CONFIG, "_name_or_path": "meta-llama/Meta-Llama-3-8B"}))
    model = card_from_hf_config(path)
    assert model.name == "meta-llama-3-8b" and model.kind == "llm" and model.default_dtype == "bf16"
    assert model.param_count() == card("llama-3-8b").param_count()
    assert resolve(str(tmp_path)).param_count() == model.param_count()  # a directory holding config.json


def test_hf_config_families(tmp_path):
    mixtral = {**LLAMA_3_8B_CONFIG, "model_type": "mixtral", "vocab_size": 32000, "num_local_experts": 8,
               "num_experts_per_tok": 2}
    whisper = {"model_type": "whisper", "d_model": 1280, "encoder_layers": 32, "decoder_layers": 32,
               "encoder_attention_heads": 20, "decoder_attention_heads": 20, "encoder_ffn_dim": 5120,
               "decoder_ffn_dim": 5120, "vocab_size": 51866, "max_source_positions": 1500,
               "max_target_positions": 448, "num_mel_bins": 128, "activation_function": "gelu"}
    bert = {"model_type": "bert", "hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6,
            "num_attention_heads": 12, "vocab_size": 30522, "max_position_embeddings": 512, "hidden_act": "gelu"}
    for name, config, expected in (("mixtral", mixtral, "mixtral-8x7b"), ("whisper", whisper, "whisper-large-v3"),
                                   ("bert", bert, "all-minilm-l6-v2")):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config))
        model = card_from_hf_config(path, name=name)
        assert model.kind == card(expected).kind
        assert model.param_count() == pytest.approx(card(expected).param_count(), rel=0.002), name


@pytest.mark.parametrize(
    "text, message",
    [
        (json.dumps({"model_type": "llama", "hidden_size": 4096}), "missing field.*intermediate_size"),
        ("{not json", "not valid JSON"),
        (json.dumps({**LLAMA_3_8B_CONFIG, "num_key_value_heads": 5}), "multiple of num_kv_heads"),
    ],
)
def test_bad_hf_configs_are_explained(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(HetagentError, match=message) as info:
        card_from_hf_config(path)
    assert str(path) in str(info.value)
