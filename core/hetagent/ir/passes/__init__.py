"""IR passes: each a plain `Module -> Module` function with its own tests."""

from hetagent.ir.passes.decompose import decompose
from hetagent.ir.passes.ids import assign_ids, op_id
from hetagent.ir.passes.order import sort_topologically

__all__ = ["assign_ids", "decompose", "op_id", "sort_topologically"]
