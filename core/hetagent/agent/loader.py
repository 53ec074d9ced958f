"""The one way an AGENT argument becomes an agent module, for every command (`spec/frontends.md`).

    path/agent.mlir, path/agent.mlirbc   a module in MLIR text or bytecode
    path/file.py:NAME                    NAME in a Python file: an @agent function (traced), a plain function
                                         (traced as an agent of that name), or a LangGraph graph (imported)
    package.module:NAME                  the same, from an importable module
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Callable

from iree.compiler import ir

from hetagent.agent.source import graph_name, is_langgraph, load_object, split, user_code
from hetagent.errors import HetagentError
from hetagent.ir.module import load


def load_agent(spec: str | Path, *, context: ir.Context | None = None,
               on_note: Callable[[str], None] | None = None) -> ir.Module:
    """The module AGENT names (not yet verified: callers verify, with the user's locations in every message).

    `on_note` receives what an importer has to say (how each LangGraph node was mapped, defaults it assumed).
    """
    where, name = split(spec)
    if name is None:
        return load(where, context=context)
    return _to_module(load_object(str(spec)), name, str(spec), on_note or _to_stderr)


def _to_stderr(note: str) -> None:
    print(note, file=sys.stderr)


def _to_module(found, name: str, spec: str, on_note) -> ir.Module:
    from hetagent.agent.trace import Agent

    if isinstance(found, ir.Module):
        return found
    if isinstance(found, Agent):
        return user_code(found.trace, spec, "tracing")
    if is_langgraph(found):
        from hetagent.agent.langgraph import import_graph

        imported = import_graph(found, name=graph_name(spec), origin=spec)
        for note in imported.notes():
            on_note(note)
        return imported.module
    if inspect.isfunction(found):
        return user_code(Agent(found).trace, spec, "tracing")
    raise HetagentError(f"agent {spec!r}: {name} is a {type(found).__name__}; expected an @agent function, a function "
                        "to trace, or a LangGraph StateGraph / compiled graph")
