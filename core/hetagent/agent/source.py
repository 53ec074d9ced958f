"""Where an agent comes from: the forms of the AGENT argument (`spec/frontends.md`) and importing the user's Python
for one. Errors in the user's code (an exception while importing or tracing) name the user's file and line.

    path/agent.mlir, path/agent.mlirbc   a module in MLIR text or bytecode
    path/file.py:NAME                    NAME in a Python file
    package.module:NAME                  the same, from an importable module
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import traceback
from pathlib import Path
from typing import Callable

from hetagent.errors import HetagentError

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


def load_object(spec: str):
    """The Python object `file.py:NAME` or `module:NAME` names (the file imported once per process)."""
    check(spec)
    where, name = split(spec)
    return _attribute(_import(where, spec), name, spec)


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
            user_code(lambda: loader_spec.loader.exec_module(module), spec, "importing")
        except BaseException:
            del sys.modules[module_name]
            raise
        finally:
            sys.path.remove(str(path.parent))
        return module
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # `module:NAME` from the working directory, as `python -m` does
    try:
        return user_code(lambda: importlib.import_module(where), spec, "importing")
    except ModuleNotFoundError as exc:
        raise HetagentError(f"agent {spec!r}: no module named {exc.name!r} (expected {FORMS})") from None


def _attribute(module, name: str, spec: str):
    if not hasattr(module, name):
        from hetagent.agent.trace import Agent

        offered = sorted(n for n, v in vars(module).items()
                         if isinstance(v, Agent) or is_langgraph(v))
        raise HetagentError(f"agent {spec!r}: {spec.rpartition(':')[0]} has no {name!r}"
                            + (f"; agents and graphs there: {', '.join(offered)}" if offered else ""))
    return getattr(module, name)


def is_langgraph(value) -> bool:
    return type(value).__module__.split(".")[0] == "langgraph"


def user_code(run: Callable, spec: str, doing: str):
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
