"""IR passes: each a plain `Module -> Module` function with its own tests."""

from hetagent.ir.passes.decompose import decompose
from hetagent.ir.passes.order import sort_topologically

__all__ = ["decompose", "sort_topologically"]
