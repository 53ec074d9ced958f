"""Reading and writing agent modules: text and bytecode, with file names kept in locations."""

from __future__ import annotations

import io
from pathlib import Path

from iree.compiler import ir

from hetagent.errors import IRError
from hetagent.files import read_bytes
from hetagent.ir import guard
from hetagent.ir.context import new_context, parse_error

BYTECODE_MAGIC = b"ML\xefR"




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
        raise parse_error(origin, exc) from None


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
        raise parse_error(str(path), exc) from None
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
