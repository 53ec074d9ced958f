"""`sort_topologically`: put every agent region's ops in dataflow order.

An agent graph is an MLIR graph region, so authors may write ops in any order. Tools that walk a block once
(the planner's task graph, the runtime's scheduler, partitioning) want producers before consumers; this pass
gives them that, once, instead of each re-deriving it. The verifier has already rejected cycles.
"""

from __future__ import annotations

from iree.compiler import ir


def _users_outside_block(op, block) -> list:
    """The ops of `block` whose results `op` (or anything nested in it) reads."""
    found = []

    def visit(inner):
        for value in inner.operands:
            owner = value.owner
            if not isinstance(owner, ir.Block) and owner.operation.block == block and owner != op:
                found.append(owner)
        for region in inner.regions:
            for nested in region.blocks:
                for nested_op in nested.operations:
                    visit(nested_op)

    visit(op)
    return found


def _sort_block(block) -> None:
    """Iterative (explicit stacks), so a long chain written in reverse does not exhaust Python's stack; nested
    blocks are bounded by the nesting limit of spec/dialect.md."""
    blocks = [block]
    while blocks:
        block = blocks.pop()
        ops = list(block.operations)
        if not ops:
            continue
        body, terminator = ops[:-1], ops[-1]
        position = {op: i for i, op in enumerate(body)}
        placed, ordered = set(), []
        for root in body:
            if root in placed:
                continue
            placed.add(root)  # marked first: cycles were rejected by the verifier, so this only stops re-visits
            pending = [(root, iter(_dependencies(root, block, position)))]
            while pending:
                op, deps = pending[-1]
                dep = next(deps, None)
                if dep is None:
                    ordered.append(op)
                    pending.pop()
                elif dep not in placed:
                    placed.add(dep)
                    pending.append((dep, iter(_dependencies(dep, block, position))))
        for op in ordered:
            op.operation.move_before(terminator)
        for op in ordered:
            for region in op.operation.regions:
                blocks.extend(region.blocks)


def _dependencies(op, block, position) -> list:
    return sorted((d for d in _users_outside_block(op, block) if d in position), key=position.__getitem__)


def sort_topologically(module: ir.Module) -> ir.Module:
    """Reorder, in place, the ops of every agent.graph so each comes after the ops it reads from."""
    for op in module.body.operations:
        if op.operation.name == "agent.graph":
            for region in op.operation.regions:
                for block in region.blocks:
                    _sort_block(block)
    return module
