"""`decompose`: split high-level agent ops into the granular operators the planner places.

    llm.call    -> llm.prefill + kv.transfer + llm.decode
    tool.invoke -> tool.lookup + tool.compute
    memory.load -> memory.embed + memory.search

Written as MLIR rewrite patterns (one per high-level op, applied by the walk-based driver). Each granular op
inherits the attributes of the op it came from that its own definition accepts, so workload descriptors
(model, dtype, token counts, tool latency...) travel with the work; a `name` label (and an `id`) gets a suffix per part.
"""

from __future__ import annotations

from iree.compiler import ir, rewrite

from hetagent.ir.optable import OPS
from hetagent.ir.passes.order import sort_topologically
from hetagent.ir.verifier import verify


def _inherited(op, target: str, part: str) -> dict[str, ir.Attribute]:
    opdef = OPS[target]
    attrs = {}
    for i in range(len(op.attributes)):
        named = op.attributes[i]
        if named.name in ("name", "id") and isinstance(named.attr, ir.StringAttr):
            attrs["name"] = ir.StringAttr.get(f"{named.attr.value}.{part}")
        elif named.name != "placement" and opdef.attr(named.name) is not None:
            attrs[named.name] = named.attr
    return attrs


def _create(op, target: str, part: str, operands, result_types) -> ir.Operation:
    return ir.Operation.create(
        target,
        results=[ir.Type.parse(t) if isinstance(t, str) else t for t in result_types],
        operands=list(operands),
        attributes=_inherited(op, target, part),
        loc=op.location,
    )


def _split_llm_call(op, rewriter: rewrite.PatternRewriter):
    with rewriter.ip:
        prefill = _create(op, "llm.prefill", "prefill", op.operands, ["!agent.kv", "!agent.tokens"])
        kv, first_token = prefill.results
        transfer = _create(op, "kv.transfer", "kv", [kv], ["!agent.kv"])
        decode = _create(op, "llm.decode", "decode", [transfer.result, first_token], [op.result.type])
    rewriter.replace_op(op, decode)


def _split_tool_invoke(op, rewriter: rewrite.PatternRewriter):
    with rewriter.ip:
        lookup = _create(op, "tool.lookup", "lookup", op.operands, ["!agent.json"])
        compute = _create(op, "tool.compute", "compute", [lookup.result], [op.result.type])
    rewriter.replace_op(op, compute)


def _split_memory_load(op, rewriter: rewrite.PatternRewriter):
    with rewriter.ip:
        embed = _create(op, "memory.embed", "embed", op.operands, ["!agent.embedding"])
        search = _create(op, "memory.search", "search", [embed.result], [op.result.type])
    rewriter.replace_op(op, search)


PATTERNS = {
    "llm.call": _split_llm_call,
    "tool.invoke": _split_tool_invoke,
    "memory.load": _split_memory_load,
}


def decompose(module: ir.Module) -> ir.Module:
    """Decompose `module` in place and return it, its ops in dataflow order; it must verify before, and
    verifies as decomposed after."""
    verify(module)
    with module.context, ir.Location.unknown():
        patterns = rewrite.RewritePatternSet()
        for root, fn in PATTERNS.items():
            patterns.add(root, fn)
        rewrite.walk_and_apply_patterns(module.operation, patterns.freeze())
    return verify(sort_topologically(module), decomposed=True)
