"""`data.transform` functions and control predicates, registered by name.

A transform is `fn(*inputs) -> value` (the op's operands in order; the op's `fn` names it). A predicate decides a
`control.loop`'s `until` or a `control.branch`'s `predicate`: `fn(values, trip) -> bool`, where `values` are the
yielded values (loop) or the condition operand (branch) and `trip` maps each op name to the results of that op in
the loop trip just finished (empty for a branch). Tool calls in model output are written
`<tool_call>{"tool": ..., "arguments": {...}}</tool_call>`.
"""

from __future__ import annotations

import json
import re

from hetagent.errors import HetagentError

TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)

# Personal data the redactor replaces, most specific first: (pattern, replacement).
_PII = (
    (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), "[EMAIL]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[SSN]"),
    (re.compile(r"\b(?:\d[ -]?){13,16}\b"), "[CARD]"),
    (re.compile(r"(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}\b"), "[PHONE]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "[IP]"),
)


def render(value) -> str:
    """Any runtime value as prompt text: text as is, documents one per line, JSON compact."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(d, dict) and "text" in d for d in value):
        return "\n".join(d["text"] for d in value)
    return json.dumps(value, sort_keys=True, default=str)


def concat(*inputs) -> str:
    return "\n\n".join(render(v) for v in inputs)


def pii_redact(*inputs) -> str:
    text = concat(*inputs)
    for pattern, replacement in _PII:
        text = pattern.sub(replacement, text)
    return text


def has_pii(text) -> bool:
    return any(pattern.search(render(text)) for pattern, _ in _PII)


TRANSFORMS = {"concat": concat, "pii_redact": pii_redact}


def no_tool_call(values, trip) -> bool:
    """The loop is done when the model's output in this trip asked for no tool."""
    return not any(TOOL_CALL.search(render(v)) for results in trip.get("llm.decode", []) for v in results)


def is_safe(values, trip) -> bool:
    return not any(has_pii(v) for v in values)


PREDICATES = {"no_tool_call": no_tool_call, "is_safe": is_safe}


def _lookup(table: dict, name: str, unknown: str):
    """A registered function, or one an imported agent names (`langgraph:...`, spec/frontends.md)."""
    if name in table:
        return table[name]
    if name.startswith("langgraph:"):
        from hetagent.agent.langgraph import reference

        return reference(name)
    raise HetagentError(f"{unknown} {name!r}; known: {', '.join(sorted(table))}")


def transform(name: str):
    return _lookup(TRANSFORMS, name, "data.transform: unknown fn")


def predicate(name: str):
    return _lookup(PREDICATES, name, "unknown predicate")
