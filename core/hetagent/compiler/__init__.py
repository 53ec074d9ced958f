"""The compiler: placement -> kernels -> partition -> lowering, each pass a plain function on MLIR modules.

    decompose (hetagent.ir)   high-level ops -> granular operators
    place                     a plan's placement on every compute op (default: the host CPU)
    attach_kernels            model functions exported from torch as func.funcs, referenced by `kernel`
    partition                 one module per backend, xfer.send / xfer.recv at every cut edge
    lower                     each kernel through its device's backend pipeline, artifacts in the cache

`compile_agent` runs them all and writes artifacts and a manifest (`spec/compiler.md`).
"""

from hetagent.compiler.cache import CompileCache, default_cache_dir
from hetagent.compiler.shapes import ModelFunction, function_for
from hetagent.compiler.attach import attach_kernels
from hetagent.compiler.lower import lower
from hetagent.compiler.partition import partition
from hetagent.compiler.place import place

__all__ = [
    "CompileCache",
    "default_cache_dir",
    "ModelFunction",
    "function_for",
    "attach_kernels",
    "lower",
    "partition",
    "place",
]
