"""The one way an AGENT argument becomes an agent module, for every command (`spec/frontends.md`).

    path/agent.mlir, path/agent.mlirbc   a module in MLIR text or bytecode
    path/file.py:NAME                    NAME in a Python file: an @agent function (traced), a plain function
                                         (traced as an agent of that name), or a LangGraph graph (imported)
    package.module:NAME                  the same, from an importable module

Errors in the user's Python (an exception while importing or tracing) name the user's file and line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from pathlib import Path
from typing import Callable

from iree.compiler import ir

from hetagent.errors import HetagentError
from hetagent.ir.module import load

_CORE = str(Path(__file__).resolve().parents[1])  # the hetagent package: not the user's code
FORMS = "an .mlir/.mlirbc file, path/file.py:NAME or package.module:NAME"


def split(spec: str | Path) -> tuple[str, str | None]:
    """(file or module, NAME or None for an MLIR file)."""
    text = str(spec)
    if text.endswith((".mlir", ".mlirbc")) or ":" not in text:
        return text, None
    where, _, name = text.rpartition(":")
    if not where or not name.isidentifier():
        raise HetagentError(f"agent {text!r}: expected {FORMS}")
    return where, name


def is_python_file(where: str) -> bool:
    return where.endswith(".py")


def resolve(spec: str, base: Path) -> str:
    """`spec` as written in a file under `base` (a problem file): file paths are relative to it, modules not."""
    where, name = split(spec)
    if name is not None and not is_python_file(where):
        return spec
    path = base / where
    return str(path) if name is None else f"{path}:{name}"


def stem(spec: str | Path) -> str:
    """A short name for what AGENT names (for file names): NAME, or the MLIR file's stem."""
    where, name = split(spec)
    return name or Path(where).stem


def graph_name(spec: str) -> str:
    """The agent name of an imported graph: NAME, but a graph bound to `graph` or `app` (as most are) is named
    after its file or module."""
    where, name = split(spec)
    if name not in ("graph", "app"):
        return name
    return re.sub(r"\W", "_", Path(where).stem if is_python_file(where) else where.rpartition(".")[2])


def check(spec: str) -> None:
    """Bad input before anything is built: a named file that does not exist."""
    where, name = split(spec)
    if (name is None or is_python_file(where)) and not Path(where).is_file():
        raise HetagentError(f"agent {spec!r}: no such file {where!r} (expected {FORMS})")


def load_agent(spec: str | Path, *, context: ir.Context | None = None,
               on_note: Callable[[str], None] | None = None) -> ir.Module:
    """The module AGENT names (not yet verified: callers verify, with the user's locations in every message).

    `on_note` receives what an importer has to say (how each LangGraph node was mapped, defaults it assumed).
    """
    where, name = split(spec)
    if name is None:
        return load(where, context=context)
    return _to_module(load_object(str(spec)), name, str(spec), on_note or _to_stderr)


def load_object(spec: str):
    """The Python object `file.py:NAME` or `module:NAME` names (the file imported once per process)."""
    check(spec)
    where, name = split(spec)
    return _attribute(_import(where, spec), name, spec)


def _to_stderr(note: str) -> None:
    print(note, file=sys.stderr)


def _import(where: str, spec: str):
    if is_python_file(where):
        path = Path(where).resolve()
        module_name = f"hetagent_agent_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.path.insert(0, str(path.parent))  # as when the file runs as a script: its neighbours import
        sys.modules[module_name] = module
        try:
            _user_code(lambda: loader_spec.loader.exec_module(module), spec, "importing")
        except BaseException:
            del sys.modules[module_name]
            raise
        finally:
            sys.path.remove(str(path.parent))
        return module
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # `module:NAME` from the working directory, as `python -m` does
    try:
        return _user_code(lambda: importlib.import_module(where), spec, "importing")
    except ModuleNotFoundError as exc:
        raise HetagentError(f"agent {spec!r}: no module named {exc.name!r} (expected {FORMS})") from None


def _attribute(module, name: str, spec: str):
    if not hasattr(module, name):
        from hetagent.agent.trace import Agent

        offered = sorted(n for n, v in vars(module).items()
                         if isinstance(v, Agent) or _is_langgraph(v))
        raise HetagentError(f"agent {spec!r}: {spec.rpartition(':')[0]} has no {name!r}"
                            + (f"; agents and graphs there: {', '.join(offered)}" if offered else ""))
    return getattr(module, name)


def _is_langgraph(value) -> bool:
    return type(value).__module__.split(".")[0] == "langgraph"


def _to_module(found, name: str, spec: str, on_note) -> ir.Module:
    from hetagent.agent.trace import Agent

    if isinstance(found, ir.Module):
        return found
    if isinstance(found, Agent):
        return _user_code(found.trace, spec, "tracing")
    if _is_langgraph(found):
        from hetagent.agent.langgraph import import_graph

        imported = import_graph(found, name=graph_name(spec), origin=spec)
        for note in imported.notes():
            on_note(note)
        return imported.module
    if inspect.isfunction(found):
        return _user_code(Agent(found).trace, spec, "tracing")
    raise HetagentError(f"agent {spec!r}: {name} is a {type(found).__name__}; expected an @agent function, a function "
                        "to trace, or a LangGraph StateGraph / compiled graph")


def _user_code(run: Callable, spec: str, doing: str):
    """Run the user's code; an exception it raises becomes an error naming the user's line, not a traceback."""
    try:
        return run()
    except (HetagentError, ModuleNotFoundError):
        raise
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if not f.filename.startswith((_CORE, "<frozen"))]
        at = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
        raise HetagentError(f"{at}{type(exc).__name__}: {exc} (while {doing} agent {spec!r})") from None
