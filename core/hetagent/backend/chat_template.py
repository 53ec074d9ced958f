"""Chat templates: a conversation as the prompt text a model was trained on, rendered as transformers renders it.

A Hugging Face checkpoint keeps its template in `chat_template.jinja` or in `tokenizer_config.json`'s
`chat_template` (a string, or a list of named templates of which "default" is used). It is rendered in a
sandboxed Jinja environment set up as transformers' `apply_chat_template` sets it up (trim_blocks,
lstrip_blocks, loop controls, a `tojson` that keeps non-ASCII text, `raise_exception`, `strftime_now`), with
the special tokens (`bos_token`, `eos_token`, ...) and `add_generation_prompt=True`, so the prompt is the one
transformers would give the model. The template is untrusted input: the sandbox keeps it from reaching Python.

`Chat` is how a conversation travels through an agent: text (each message after its role, for ops that read
text) that remembers its messages, so the LLM call it feeds can apply the template.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

from hetagent.errors import HetagentError


class Chat(str):
    """A conversation as a runtime text value: the text of its messages, and the messages themselves."""

    messages: tuple = ()

    def __new__(cls, messages: list[dict]):
        messages = tuple({"role": m["role"], "content": m["content"]} for m in messages)
        text = messages[0]["content"] if len(messages) == 1 else "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
        value = super().__new__(cls, text)
        value.messages = messages
        return value

    def __reduce__(self):  # plain pickling would drop the messages
        return Chat, ([dict(m) for m in self.messages],)


@lru_cache(maxsize=None)
def _environment():
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


class ChatTemplate:
    def __init__(self, source: str, special_tokens: dict[str, str], origin: str):
        import jinja2

        self.origin = origin
        self.special_tokens = special_tokens
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateError as exc:
            raise HetagentError(f"{origin}: the chat template does not parse ({exc})") from None

    def render(self, messages, *, add_generation_prompt: bool = True) -> str:
        import jinja2

        try:
            return self._template.render(messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
                                         tools=None, documents=None, **self.special_tokens)
        except jinja2.TemplateError as exc:  # raise_exception in the template: the conversation is refused
            raise HetagentError(f"{self.origin}: the chat template refused the conversation ({exc})") from None
