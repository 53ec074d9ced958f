"""`partition`: split a placed agent module into one module per backend, with transfers at every cut edge.

Each partition is a copy of the agent that keeps:

- the compute ops placed on its backend;
- the control skeleton around them: a graph, `control.loop` or `control.branch` is kept in every partition
  that has an op inside it, so each partition runs its loops and branches itself (a loop's `until` predicate
  and a branch's condition see the same values everywhere, so every copy takes the same path);
- the kernels (func.func) its ops reference.

A value used in a partition that does not produce it crosses a cut: the producing partition gets an
`xfer.send` and the using partition an `xfer.recv` in the same block (so both run once per loop trip), paired
by a channel name, with the payload kind (`kv`, `tokens`, `text`, `embedding`, ...) and the peer backend. A
value a control op produces (a loop's result) is sent by the first partition, in backend order, that runs
the control op. A top-level agent's outputs are returned by the partition that produces the first of them;
the others end their copy of that graph with an empty `agent.return`.

`agent.call` is partitioned as a unit: every op of the called graph must sit on one backend.
"""

from __future__ import annotations

from iree.compiler import ir

from hetagent.compiler.lower import functions_needed
from hetagent.compiler.shapes import kernel_symbols
from hetagent.compiler.place import agent_ops, ops_within
from hetagent.plan import Placement
from hetagent.errors import HetagentError
from hetagent.ir.module import clone, functions
from hetagent.ir.verifier import verify

CONTROL = ("agent.graph", "control.loop", "control.branch")
TERMINATORS = ("agent.return", "control.yield")


class _Cut:
    """Where each op of one module runs, worked out once; applied to a copy per partition by op index."""

    def __init__(self, module: ir.Module):
        self.ops = agent_ops(module)
        self.index = {op: i for i, op in enumerate(self.ops)}
        self.graphs = {op.attributes["sym_name"].value: op for op in self.ops if op.name == "agent.graph"}
        self.keeps: list[set[str]] = [set() for _ in self.ops]
        for i, op in enumerate(self.ops):
            if op.name not in CONTROL + TERMINATORS:
                backend = self._backend(op)
                self.keeps[i].add(backend)
                parent = op.parent
                while parent.name != "builtin.module":  # every enclosing control op runs here too
                    self.keeps[self.index[parent.operation]].add(backend)
                    parent = parent.parent
        for i, op in enumerate(self.ops):
            if op.name in TERMINATORS:
                self.keeps[i] = set(self.keeps[self.index[op.parent.operation]])
        self.backends = sorted(set().union(*self.keeps)) if self.ops else []

    def _backend(self, op) -> str:
        if op.name == "agent.call":
            callee = self.graphs[op.attributes["callee"].value]
            inside = {self._backend(inner) for inner in ops_within(callee)[1:] if inner.name not in CONTROL + TERMINATORS}
            if len(inside) != 1:
                raise HetagentError(
                    f"agent.call of @{op.attributes['callee'].value}: the called graph spans backends "
                    f"{', '.join(sorted(inside)) or '(none)'}; a called graph must run on one backend (inline it "
                    "to split it)"
                )
            return inside.pop()
        placement = Placement.of(op)
        if placement is None:
            raise HetagentError(f"'{op.name}' at {op.location} has no placement: run the place pass first")
        return placement.backend

    def sender(self, producer: int) -> str:
        """The partition that sends the results of op `producer` to those that need them."""
        return min(self.keeps[producer])

    def returns_outputs(self, i: int, partition: str) -> bool:
        """False for the agent.return of a top-level graph in a partition other than the one returning its
        outputs (the producer of the first output)."""
        op = self.ops[i]
        if op.name != "agent.return" or op.parent.parent.name != "builtin.module":
            return True
        operands = list(op.operands)
        if operands and not isinstance(operands[0].owner, ir.Block):
            return partition == self.sender(self.index[operands[0].owner.operation])
        return partition == min(self.keeps[i])

    def needs(self) -> list[tuple[int, int, str]]:
        """(producer index, result number, partition) for every value a partition uses but does not have."""
        needed = set()
        for i, op in enumerate(self.ops):
            for partition in self.keeps[i]:
                if not self.returns_outputs(i, partition):
                    continue
                for value in op.operands:
                    if isinstance(value.owner, ir.Block):
                        continue  # block arguments live wherever their block is kept
                    producer = self.index[value.owner.operation]
                    if partition not in self.keeps[producer]:
                        needed.add((producer, ir.OpResult(value).result_number, partition))
        return sorted(needed)


def _terminator(block):
    """The block's last op (agent ops are unregistered, so MLIR does not know it is a terminator)."""
    operations = block.operations
    return operations[len(operations) - 1]


def _payload(value) -> str:
    return str(value.type).removeprefix("!agent.")


def partition(module: ir.Module) -> dict[str, ir.Module]:
    """One verified module per backend that has ops, keyed by backend id; `module` is left unchanged."""
    verify(module)
    cut = _Cut(module)
    channels = {need: f"c{n}" for n, need in enumerate(cut.needs())}
    return {backend: _partition_for(module, cut, backend, channels) for backend in cut.backends}


def _partition_for(module: ir.Module, cut: _Cut, backend: str, channels: dict) -> ir.Module:
    part = clone(module)
    ops = agent_ops(part)  # the copy's ops, in the same order as cut.ops
    with part.context:
        for (producer, number, receiver), channel in channels.items():
            value = ops[producer].results[number]
            attributes = {"channel": ir.StringAttr.get(channel), "payload": ir.StringAttr.get(_payload(value))}
            if receiver == backend:  # a recv where the value is made, standing in for it
                attributes["peer"] = ir.StringAttr.get(cut.sender(producer))
                recv = ir.Operation.create("xfer.recv", results=[value.type], attributes=attributes,
                                           loc=ops[producer].location, ip=ir.InsertionPoint(ops[producer]))
                value.replace_all_uses_with(recv.result)
            elif cut.sender(producer) == backend:  # a send in the block the value is made in
                attributes["peer"] = ir.StringAttr.get(receiver)
                ir.Operation.create("xfer.send", operands=[value], attributes=attributes, loc=ops[producer].location,
                                    ip=ir.InsertionPoint(_terminator(ops[producer].block)))
        for i, op in enumerate(ops):
            if backend in cut.keeps[i] and not cut.returns_outputs(i, backend):
                ir.Operation.create("agent.return", loc=op.location, ip=ir.InsertionPoint(op))
                op.erase()
    _erase([op for i, op in enumerate(ops) if backend not in cut.keeps[i]])
    kernels = {symbol for op in agent_ops(part) for symbol in kernel_symbols(op)}
    needed = set(functions_needed(part, kernels))
    for name, func in functions(part).items():
        if name not in needed:
            func.erase()
    return verify(part, what=f"partition {backend!r}")


def _erase(ops: list) -> None:
    """Erase ops that are not kept, users before producers (an op may only go once nothing uses its results).
    Ops nested in another erased op go with it."""
    doomed = set(ops)
    units = [op for op in ops if not _inside(op, doomed)]
    while units:
        unused = [all(not list(result.uses) for result in op.results) for op in units]
        if not any(unused):
            raise AssertionError("partition: ops left that still have users")  # the graph is acyclic
        for op, ready in zip(units, unused):
            if ready:
                op.erase()
        units = [op for op, ready in zip(units, unused) if not ready]


def _inside(op, doomed: set) -> bool:
    parent = op.parent
    while parent is not None:
        if parent.operation in doomed:
            return True
        parent = parent.parent
    return False
