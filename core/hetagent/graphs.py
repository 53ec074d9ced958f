"""Directed-graph helpers shared by the IR verifier and the planner's problem reader."""

from __future__ import annotations

from typing import Hashable, Iterable, Mapping


def find_cycle(nodes: Iterable[Hashable], edges: Mapping[Hashable, Iterable[Hashable]]) -> list | None:
    """One cycle of the directed graph `edges` (node -> successors) as [n, ..., n], or None.

    Iterative depth-first search: a chain of thousands of nodes must not exhaust Python's stack."""
    state: dict = {}
    for root in nodes:
        if root in state:
            continue
        state[root] = "open"
        path, pending = [root], [iter(edges[root])]
        while pending:
            node = next(pending[-1], None)
            if node is None:
                state[path.pop()] = "done"
                pending.pop()
            elif state.get(node) == "open":
                return path[path.index(node) :] + [node]
            elif node not in state:
                state[node] = "open"
                path.append(node)
                pending.append(iter(edges[node]))
    return None
