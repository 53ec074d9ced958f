"""The kernels the tiers build: reference-decoder functions of tiny-llama at small static shapes."""

from __future__ import annotations

from functools import cache

from hetagent.compiler.shapes import ModelFunction

MODEL = "tiny-llama"  # a real Llama-architecture decoder (GQA, SwiGLU, RoPE), small enough to build in seconds
PROMPT, CAPACITY = 64, 128  # the shapes tier d's fixture agent asks for too, so its kernels are cache hits


def model_function(function: str, dtype: str, *, capacity: int = CAPACITY) -> ModelFunction:
    return ModelFunction(MODEL, function, dtype, 1, prompt=PROMPT if function != "decode" else 0,
                         capacity=capacity if function != "embed" else 0)


@cache
def clean_source(fn: ModelFunction) -> str:
    """The function exported from the torch reference (compile cache), alone in a clean module."""
    from iree.compiler import ir

    from hetagent.compiler.cache import CompileCache
    from hetagent.compiler.export import import_function
    from hetagent.compiler.lower import clean_module_text
    from hetagent.ir.module import new_context

    context = new_context()
    with context:
        module = ir.Module.create(loc=ir.Location.unknown())
    import_function(fn, module, CompileCache())
    return clean_module_text(module, fn.symbol)
