"""`assign_ids`: give every op of the agent graphs a stable id, written into the module as its `id` attribute.

The id is what the compile manifest, the runtime's program, run reports and traces call the op, so they agree by
name, never by position. An op keeps an id it already has; otherwise its id is its `name` label when no other op
has that label, else `<label>#<k>` (an unlabelled op: `<op name>#<k>`), k counting from 1 in walk order past the
ids already taken. Labelled ops therefore keep their id when other ops are added, removed or reordered.
"""

from __future__ import annotations

from collections import Counter

from iree.compiler import ir

from hetagent.errors import HetagentError
from hetagent.ir.context import location_of
from hetagent.ir.optable import OPS


def identified_ops(module: ir.Module) -> list:
    """The ops an id is given to: every op inside the module's agent graphs but terminators, in walk order."""
    found = []

    def walk(op):
        for region in op.regions:
            for block in region.blocks:
                for inner in block.operations:
                    inner = inner.operation
                    opdef = OPS.get(inner.name)
                    if opdef is None or not opdef.terminator:
                        found.append(inner)
                    walk(inner)

    for graph in module.body.operations:
        if graph.operation.name == "agent.graph":
            walk(graph.operation)
    return found


def op_id(op) -> str | None:
    return op.attributes["id"].value if "id" in op.attributes else None


def assign_ids(module: ir.Module) -> ir.Module:
    """Give every op of `module`'s agent graphs an id (in place); returns the module. Two ops with the same
    given id are an error naming both."""
    ops = identified_ops(module)
    taken: dict[str, object] = {}
    for op in ops:
        given = op_id(op)
        if given is None:
            continue
        if given in taken:
            raise HetagentError(f"op id '{given}' is given to two ops ({taken[given].name} at "
                                f"{location_of(taken[given])} and {op.name} at {location_of(op)}): ids must be unique")
        taken[given] = op
    labels = Counter(op.attributes["name"].value for op in ops if "name" in op.attributes)
    counters: Counter = Counter()
    with module.context:
        for op in ops:
            if op_id(op) is not None:
                continue
            label = op.attributes["name"].value if "name" in op.attributes else None
            new = label if label is not None and labels[label] == 1 and label not in taken else None
            base = label or op.name
            while new is None or new in taken:
                counters[base] += 1
                new = f"{base}#{counters[base]}"
            op.attributes["id"] = ir.StringAttr.get(new)
            taken[new] = op
    return module
