"""The MLIR context agent modules live in, and how its parse errors read: below both the module reader and the
parse guard (`hetagent.ir.guard`), which parses in a child process."""

from __future__ import annotations

import re
import sys
import types

from iree.compiler import ir
from iree.compiler._mlir_libs import _mlir

from hetagent.errors import IRError
from hetagent.ir.optable import DIALECTS

FILE_LOC = re.compile(r'"([^"]*)":(\d+):(\d+)')


def _register_agent_namespaces() -> None:
    """Give MLIR's Python bindings a (empty) module per agent dialect namespace.

    Every time the bindings wrap an op they look for a Python module of its dialect and, for unregistered
    dialects, retry a failing import on each access (~70 µs, most of the verifier's time). A module found once
    is cached for good, so we provide one per namespace under a search prefix of our own.
    """
    prefix = __name__ + "_namespaces"
    for namespace in DIALECTS:
        sys.modules.setdefault(f"{prefix}.{namespace}", types.ModuleType(f"{prefix}.{namespace}"))
    if prefix not in _mlir.globals.dialect_search_modules:
        _mlir.globals.append_dialect_search_prefix(prefix)


_register_agent_namespaces()


def new_context() -> ir.Context:
    """An MLIR context that accepts the agent dialects (held as unregistered ops in generic form)."""
    context = ir.Context()
    context.allow_unregistered_dialects = True
    return context


def location_of(op) -> str:
    """`file:line:col` of an op (or of a value's location), or the raw location when it names no file."""
    text = str(op.location)
    match = FILE_LOC.search(text)
    if match:
        return f"{match.group(1)}:{match.group(2)}:{match.group(3)}"
    return text


def parse_error(origin: str, exc: ir.MLIRError) -> IRError:
    lines = []
    for diag in exc.error_diagnostics:
        where = FILE_LOC.search(str(diag.location))
        prefix = f"{where.group(1)}:{where.group(2)}:{where.group(3)}" if where else origin
        lines.append(f"{prefix}: error: {diag.message}")
    if not lines:
        lines.append(f"{origin}: error: {exc}")
    message = "\n".join(lines) + "\n(agent modules are MLIR in generic form; see spec/dialect.md)"
    return IRError(f"{origin}: malformed MLIR:\n" + message, lines)
