"""Export the reference models' functions (the Llama decoder's, the BERT encoder's) from torch into MLIR `func.func`s (torch dialect).

`torch.export` traces a function of (inputs..., weights...) with every tensor on the `meta` device, so no
weight is ever allocated — an 8B model exports as cheaply as a tiny one — and `iree.compiler.extras.
fx_importer` turns the graph into a func.func. Weights are arguments, not constants: artifacts stay small, do
not depend on a checkpoint, and are shared by every checkpoint of the same shapes; the runtime passes the
weights it loaded (`spec/compiler.md`, kernel signatures).

Exported functions are cached on disk (`CompileCache`, namespace "functions"): a hit does not import torch.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
from pathlib import Path

from iree.compiler import ir

from hetagent.compiler.cache import CompileCache, digest
from hetagent.backend.functions import FUNCTION_ATTR, ModelFunction, export_program
from hetagent.models.catalog import card


def installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _reference_source_digest() -> str:
    """The reference models' source (decoder and encoder): editing it must invalidate every exported function."""
    return digest(*(Path(importlib.util.find_spec(f"hetagent.models.{m}").origin).read_bytes()
                    for m in ("reference", "encoder")))


def function_key(fn: ModelFunction) -> str:
    return digest(
        dataclasses.asdict(fn), dataclasses.asdict(card(fn.model)), installed_version("torch"), installed_version("iree-base-compiler"),
        _reference_source_digest(),
    )


def _export_to_module(fn: ModelFunction, context: ir.Context) -> ir.Module:
    program = export_program(fn)  # first: without torch, this raises the error that says what to install
    from iree.compiler.extras.fx_importer import FxImporter

    with context:
        module = ir.Module.create(loc=ir.Location.unknown())
    FxImporter(module=module).import_program(program, func_name=fn.symbol)
    (func,) = module.body.operations
    func.attributes[FUNCTION_ATTR] = fn.as_attribute(context)
    return module


def import_function(fn: ModelFunction, module: ir.Module, cache: CompileCache) -> ir.Operation:
    """Append `fn` as a func.func to `module` (from the cache, else exported and cached); returns the op."""
    from hetagent.ir.module import parse_own, to_bytecode

    key = function_key(fn)
    cached = cache.get("functions", key, "mlirbc")
    if cached is not None:
        exported = parse_own(cached, module.context)
    else:
        exported = _export_to_module(fn, module.context)
        cache.put("functions", key, "mlirbc", to_bytecode(exported))
    (func,) = exported.body.operations
    clone = func.operation.clone()
    module.body.append(clone)
    return clone
