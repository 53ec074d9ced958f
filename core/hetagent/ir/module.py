"""Reading and writing agent modules: text and bytecode, with file names kept in locations."""

from __future__ import annotations

import io
import re
import sys
import types
from pathlib import Path

from iree.compiler import ir
from iree.compiler._mlir_libs import _mlir

from hetagent.errors import IRError
from hetagent.files import read_bytes
from hetagent.ir import guard
from hetagent.ir.optable import DIALECTS

BYTECODE_MAGIC = b"ML\xefR"
_FILE_LOC = re.compile(r'"([^"]*)":(\d+):(\d+)')


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


def parse(source: str | bytes, *, context: ir.Context | None = None, origin: str = "<string>") -> ir.Module:
    """Parse textual or bytecode MLIR from outside, through the guards of `hetagent.ir.guard`. Locations of
    text name the source "-"."""
    if isinstance(source, bytes) and source.startswith(BYTECODE_MAGIC):
        text = guard.bytecode_to_text(source, origin)
    else:
        text = guard.check_text(source, origin)
    try:
        return ir.Module.parse(text, context or new_context())
    except ir.MLIRError as exc:
        raise _parse_error(origin, exc) from None


def load(path: str | Path, *, context: ir.Context | None = None) -> ir.Module:
    """Parse an `.mlir` (text) or `.mlirbc` (bytecode) file through the guards; locations carry its path."""
    path = Path(path)
    what = "agent module (.mlir text or .mlirbc bytecode)"
    if not path.exists():
        raise IRError(f"{path}: no such file (expected an agent module in .mlir text or .mlirbc bytecode)")
    try:
        before = path.stat()
    except OSError:
        before = None  # read_bytes says what is wrong
    data = read_bytes(path, what, limit=guard.MAX_BYTES, error=IRError)
    if data.startswith(BYTECODE_MAGIC):
        return parse(data, context=context, origin=str(path))
    guard.check_text(data, str(path))
    # Parsed from the file so that locations carry its path (the bindings take no buffer name). The checks hold
    # for what was read: a file replaced in between is refused.
    try:
        module = ir.Module.parseFile(str(path), context or new_context())
    except ir.MLIRError as exc:
        raise _parse_error(str(path), exc) from None
    after = path.stat()
    if before is None or (after.st_ino, after.st_size, after.st_mtime_ns) != (before.st_ino, before.st_size,
                                                                           before.st_mtime_ns):
        raise IRError(f"{path}: changed while it was being read; try again")
    return module


def parse_own(data: bytes, context: ir.Context) -> ir.Module:
    """Bytecode this program wrote and whose recorded hash still matches (the compile cache checks it): read
    directly, without the guard's child, like `clone`'s. Never for files from outside."""
    return ir.Module.parse(data, context)


def to_text(module: ir.Module, *, debug_info: bool = False) -> str:
    """Generic-form text (agent ops are unregistered, so always generic); `debug_info` keeps locations."""
    return module.operation.get_asm(enable_debug_info=debug_info)


def to_bytecode(module: ir.Module) -> bytes:
    buffer = io.BytesIO()
    module.operation.write_bytecode(buffer)
    return buffer.getvalue()


def save(module: ir.Module, path: str | Path) -> None:
    """Write text, or bytecode when the path ends in `.mlirbc`."""
    path = Path(path)
    if path.suffix == ".mlirbc":
        path.write_bytes(to_bytecode(module))
    else:
        path.write_text(to_text(module, debug_info=True))


def clone(module: ir.Module) -> ir.Module:
    """A deep copy in the same context (passes that must not touch their input work on one)."""
    return ir.Module.parse(to_bytecode(module), module.context)


def functions(module: ir.Module) -> dict[str, ir.Operation]:
    """The module's top-level func.func ops (compute kernels) by name."""
    found = {}
    for op in module.body.operations:
        op = op.operation  # a func.func's OpView has its own `name` (the symbol): compare the op's name
        if op.name == "func.func":
            found[op.attributes["sym_name"].value] = op
    return found


def location_of(op) -> str:
    """`file:line:col` of an op (or of a value's location), or the raw location when it names no file."""
    text = str(op.location)
    match = _FILE_LOC.search(text)
    if match:
        return f"{match.group(1)}:{match.group(2)}:{match.group(3)}"
    return text


def _parse_error(origin: str, exc: ir.MLIRError) -> IRError:
    lines = []
    for diag in exc.error_diagnostics:
        where = _FILE_LOC.search(str(diag.location))
        prefix = f"{where.group(1)}:{where.group(2)}:{where.group(3)}" if where else origin
        lines.append(f"{prefix}: error: {diag.message}")
    if not lines:
        lines.append(f"{origin}: error: {exc}")
    message = "\n".join(lines) + "\n(agent modules are MLIR in generic form; see spec/dialect.md)"
    return IRError(f"{origin}: malformed MLIR:\n" + message, lines)
