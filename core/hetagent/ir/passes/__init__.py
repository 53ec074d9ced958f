"""IR passes: each a plain `Module -> Module` function with its own tests."""

from hetagent.ir.passes.decompose import decompose

__all__ = ["decompose"]
