"""`attach_kernels`: give every op that runs a model function its compute kernel.

For each `llm.prefill`, `llm.decode` and `memory.embed` without a `kernel`, the model function it needs
(`functions.function_for`: model, function, dtype and static shapes from its workload descriptor and
placement) is exported from the torch reference decoder into the module as a func.func — once per distinct
function — and the op gets `kernel = @symbol`; a prefill also gets `extend_kernel = @symbol` (the function its
worker's prefix cache runs, `functions.extend_for`). Ops whose model has no reference implementation keep no
kernel; `kernel_notes` says why for each.
"""

from __future__ import annotations

from iree.compiler import ir

from hetagent.compiler.cache import CompileCache
from hetagent.compiler.export import import_function
from hetagent.compiler.shapes import FUNCTION_OF_OP, ModelFunction, extend_for, function_for
from hetagent.compiler.place import compute_ops
from hetagent.ir.module import functions
from hetagent.ir.verifier import verify


def wanted_functions(module: ir.Module) -> list[tuple[object, str, ModelFunction]]:
    """(op, attribute, function) for every kernel an op needs and has none yet: its `kernel`, and a
    prefill's `extend_kernel`."""
    wanted = []
    for op in compute_ops(module):
        if op.name in FUNCTION_OF_OP and "kernel" not in op.attributes:
            function, _ = function_for(op)
            if function is not None:
                wanted.append((op, "kernel", function))
                if function.function == "prefill":
                    wanted.append((op, "extend_kernel", extend_for(function)))
    return wanted


def kernel_notes(module: ir.Module) -> dict[object, str]:
    """For model-function ops left without a kernel: why."""
    return {
        op: function_for(op)[1]
        for op in compute_ops(module)
        if op.name in FUNCTION_OF_OP and "kernel" not in op.attributes
    }


def attach_kernels(module: ir.Module, *, cache: CompileCache, on_exported=None) -> ir.Module:
    """Export the needed model functions into `module` and reference them; returns the module, verified.
    `on_exported(function)` is called once per function added."""
    verify(module)
    present = set(functions(module))
    for op, attribute, function in wanted_functions(module):
        if function.symbol not in present:
            import_function(function, module, cache)
            present.add(function.symbol)
            if on_exported:
                on_exported(function)
        with module.context:
            op.attributes[attribute] = ir.FlatSymbolRefAttr.get(function.symbol)
    return verify(module)
