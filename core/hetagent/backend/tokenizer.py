"""The tokenizer of the model a kernel runs: a checkpoint's own, or the byte tokenizer of the stand-ins.

A Hugging Face checkpoint (`--model-dir DIR`, `DIR/<model>/config.json`) must bring `tokenizer.json`, read by
the `tokenizers` library; `tokenizer_config.json` gives the special tokens and the chat template (or
`chat_template.jinja` does), `generation_config.json` the end-of-sequence ids and the sampling defaults
(`top_p`, `top_k` when it samples). A built-in model (random weights, or a `DIR/<model>/` without a config)
speaks the byte tokenizer of `hetagent.backend.text`.

The prompt of an LLM call: with a chat template, its inputs become the conversation (a `Chat` input's messages,
else one user message of their text, after the op's `system` prompt) rendered by the template, then tokenized
without adding special tokens (the template writes them), as transformers' `apply_chat_template` does; without
one, the text is tokenized with the tokenizer's own special tokens (a BOS, for Llama).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from hetagent.backend import text
from hetagent.backend.chat_template import Chat, ChatTemplate
from hetagent.backend.transforms import render
from hetagent.errors import HetagentError
from hetagent.models.catalog import card, checkpoint_dir
from hetagent.models.hf_checkpoint import checkpoint_json

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class ByteTokenizer:
    """The stand-ins' tokenizer: bytes, BOS first, EOS ends; no chat template."""

    template: ChatTemplate | None = None
    eos_ids = frozenset({text.EOS})
    banned = (text.PAD, text.BOS)
    vocab = text.VOCAB_USED
    defaults = text.Sampling()

    def encode(self, prompt: str, *, special: bool = True) -> list[int]:
        return text.encode(prompt)

    def decode(self, ids) -> str:
        return text.decode(ids)

    def prompt_ids(self, inputs, system: str | None = None) -> list[int]:
        return self.encode("\n\n".join(render(v) for v in inputs))


class HFTokenizer(ByteTokenizer):
    banned = ()

    def __init__(self, directory: Path, vocab: int):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise HetagentError("reading a checkpoint's tokenizer.json needs the `tokenizers` package") from None
        file = directory / "tokenizer.json"
        if not file.is_file():
            raise HetagentError(f"{directory}: no tokenizer.json (a Hugging Face checkpoint brings its tokenizer)")
        try:
            self._tokenizer = Tokenizer.from_file(str(file))
        except Exception as exc:  # the library raises bare Exceptions for malformed files
            raise HetagentError(f"{file}: not a tokenizers file ({exc})") from None
        self.vocab = vocab
        config = checkpoint_json(directory, "tokenizer_config.json", "tokenizer config", required=False)
        special = {key: _token_text(config[key]) for key in SPECIAL_TOKENS if config.get(key) is not None}
        self.template = _chat_template(directory, config, special)
        generation = checkpoint_json(directory, "generation_config.json", "generation config", required=False)
        eos = generation.get("eos_token_id")
        if eos is None and "eos_token" in special:
            eos = self._tokenizer.token_to_id(special["eos_token"])
        self.eos_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
        sampling = generation.get("do_sample", False)
        self.defaults = text.Sampling(top_p=generation.get("top_p") if sampling else None,
                                      top_k=generation.get("top_k") if sampling else None)

    def encode(self, prompt: str, *, special: bool = True) -> list[int]:
        return self._tokenizer.encode(prompt, add_special_tokens=special).ids

    def decode(self, ids) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)

    def prompt_ids(self, inputs, system: str | None = None) -> list[int]:
        if self.template is None:
            return super().prompt_ids(inputs)
        if len(inputs) == 1 and isinstance(inputs[0], Chat):
            messages = list(inputs[0].messages)
        else:
            messages = [{"role": "user", "content": "\n\n".join(render(v) for v in inputs)}]
        if system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
        return self.encode(self.template.render(messages), special=False)


def _token_text(token) -> str:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken object with `content`."""
    return token["content"] if isinstance(token, dict) else str(token)


def _chat_template(directory: Path, config: dict, special: dict[str, str]) -> ChatTemplate | None:
    file = directory / "chat_template.jinja"
    if file.is_file():
        return ChatTemplate(file.read_text(), special, str(file))
    source = config.get("chat_template")
    if isinstance(source, list):  # named templates: the default one is the chat template
        source = next((t.get("template") for t in source if isinstance(t, dict) and t.get("name") == "default"), None)
    if source is None:
        return None
    if not isinstance(source, str):
        raise HetagentError(f"{directory / 'tokenizer_config.json'}: chat_template must be a string")
    return ChatTemplate(source, special, str(directory / "tokenizer_config.json"))


@lru_cache(maxsize=None)
def _checkpoint_tokenizer(directory: Path, vocab: int) -> HFTokenizer:
    return HFTokenizer(directory, vocab)


def tokenizer_for(model: str) -> ByteTokenizer:
    """The tokenizer of `model`: its checkpoint's when it is one (registered with `use_model_dir`), else bytes."""
    directory = checkpoint_dir(model)
    if directory is None:
        return ByteTokenizer()
    return _checkpoint_tokenizer(directory, card(model).vocab_size)
