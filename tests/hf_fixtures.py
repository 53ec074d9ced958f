"""Small Hugging Face checkpoints built here with `transformers` (random init, `save_pretrained`) and a BPE
tokenizer trained here with `tokenizers` on examples/corpus: the files real checkpoints are, at test size."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout (benchmarks import this module too)

SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
           "<|im_start|>", "<|im_end|>", "[INST]", "[/INST]"]
# Meta's Llama 3 instruct template, as its tokenizer_config.json carries it
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Qwen2's ChatML template (a default system prompt)
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Mistral's: roles must alternate, or the template raises
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}"
)


def train_tokenizer():
    """A byte-level BPE over the example corpus (Llama 3 / Qwen2 style), a BOS added to plain text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    files = sorted(str(p) for p in (ROOT / "examples" / "corpus").rglob("*") if p.is_file())
    tokenizer.train(files, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tokenizer.token_to_id("<|begin_of_text|>"))])
    return tokenizer


# name -> (transformers config class, its fields, chat template, where the template is stored, dtype on disk)
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=256, rms_norm_eps=1e-5,
             initializer_range=0.2)  # wider than the default 0.02: distinct logits, no near-ties for argmax
VARIANTS = {
    # Llama 3: GQA, untied, llama3 rope scaling (original context 32 so the scaling shapes these lengths), sharded
    "my-llama3": ("LlamaConfig", dict(SMALL, tie_word_embeddings=False, rope_theta=500000.0,
                                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
                  LLAMA3_TEMPLATE, "jinja", "float32", "40KB"),
    # Qwen2: biased q/k/v, tied embeddings, template in tokenizer_config.json, one file
    "qwen-small": ("Qwen2Config", dict(SMALL, tie_word_embeddings=True, rope_theta=1000000.0), CHATML_TEMPLATE,
                   "config", "float32", None),
    # Mistral: no GQA here, untied, bf16 on disk
    "mistral-small": ("MistralConfig", dict(SMALL, num_key_value_heads=4, tie_word_embeddings=False,
                                            rope_theta=10000.0), MISTRAL_TEMPLATE, "config", "bfloat16", None),
}


def build_checkpoint(root: Path, name: str, tokenizer, seed: int = 0) -> Path:
    import torch
    import transformers

    config_class, fields, template, where, dtype, shard = VARIANTS[name]
    eos = tokenizer.token_to_id("<|eot_id|>" if "llama" in name else "<|im_end|>" if "qwen" in name else "<|end_of_text|>")
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    config = getattr(transformers, config_class)(vocab_size=tokenizer.get_vocab_size(), bos_token_id=bos,
                                                 eos_token_id=eos, **fields)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # random init leaves biases at zero: give them values so they are tested
        for n, p in model.named_parameters():
            if n.endswith(".bias"):
                p.normal_(0, 0.1)
    directory = root / name
    model.to(getattr(torch, dtype)).save_pretrained(directory, **({"max_shard_size": shard} if shard else {}))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>",
                                                eos_token=tokenizer.id_to_token(eos))
    fast.chat_template = template
    fast.save_pretrained(directory)
    jinja = directory / "chat_template.jinja"
    config_file = directory / "tokenizer_config.json"
    if where == "config":  # older checkpoints keep the template in tokenizer_config.json
        settings = json.loads(config_file.read_text())
        settings["chat_template"] = template
        config_file.write_text(json.dumps(settings))
        jinja.unlink(missing_ok=True)
    else:
        assert jinja.is_file() or "chat_template" in json.loads(config_file.read_text())
    return directory


BERT_TEST = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
BERT_MINILM = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)


def build_bert(root: Path, name: str = "all-minilm-l6-v2", seed: int = 0, shape: dict = BERT_TEST) -> Path:
    """A BertModel (the all-MiniLM-L6-v2 layout, at test size or its own `BERT_MINILM`) and its WordPiece
    tokenizer ([CLS] ... [SEP]), trained here on examples/corpus."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.train(sorted(str(p) for p in (ROOT / "examples" / "corpus").rglob("*") if p.is_file()), trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls),
                                                                                                    ("[SEP]", sep)])
    config = transformers.BertConfig(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=512, pad_token_id=0,
                                     **shape)
    torch.manual_seed(seed)
    model = transformers.BertModel(config).eval()
    with torch.no_grad():  # random init leaves biases at zero and LayerNorms at one: give them values to test
        for n, p in model.named_parameters():
            if n.endswith(".bias") or "LayerNorm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    directory = root / name
    model.save_pretrained(directory)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                   cls_token="[CLS]", mask_token="[MASK]").save_pretrained(directory)
    return directory


WHISPER_SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|transcribe|>", "<|translate|>",
                   "<|notimestamps|>"]


WHISPER_TEST = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=100,
                    max_target_positions=64)  # 2 s windows: 200 mel frames
WHISPER_TINY = dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                    decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_source_positions=1500,
                    max_target_positions=448)  # openai/whisper-tiny's shape: 30 s windows


def build_whisper(root: Path, name: str = "whisper-test", seed: int = 0, language: str | None = "<|en|>",
                  shape: dict = WHISPER_TEST) -> Path:
    """A WhisperForConditionalGeneration (`WHISPER_TEST` or whisper-tiny's shape), its feature extractor,
    generation config (forced language and task, or the language left to detection) and a BPE tokenizer with
    Whisper's special tokens."""
    import torch
    import transformers

    tokenizer = train_tokenizer()
    tokenizer.add_special_tokens(WHISPER_SPECIAL)
    ids = {t: tokenizer.token_to_id(t) for t in WHISPER_SPECIAL}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = transformers.WhisperConfig(
        vocab_size=tokenizer.get_vocab_size(), num_mel_bins=80, decoder_start_token_id=sot, eos_token_id=eot,
        pad_token_id=eot, bos_token_id=eot, init_std=0.2, **shape)
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".bias") or "layer_norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, max_length=shape["max_target_positions"],
        forced_decoder_ids=[[1, ids[language] if language else None], [2, ids["<|transcribe|>"]]],
        no_timestamps_token_id=ids["<|notimestamps|>"], suppress_tokens=[ids["<|translate|>"], 5, 6, 7],
        begin_suppress_tokens=[eot, 8], lang_to_id={"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}, is_multilingual=True)
    directory = root / name
    model.save_pretrained(directory)
    transformers.WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400,
                                         chunk_length=shape["max_source_positions"] // 50).save_pretrained(directory)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                                         bos_token="<|endoftext|>").save_pretrained(directory)
    return directory


def synthesized_clip(seconds: float = 1.2, rate: int = 16000, seed: int = 0):
    """A spoken-like test clip made here: a gliding harmonic tone under a syllable-rate envelope, plus noise."""
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (0.3 * voice + noise).astype(np.float32)
