"""The agent as the runtime walks it: plain Python nodes read once from the placed MLIR module.

The engine interprets the graph per request (ops run as their operands become ready; `control.loop` and
`control.branch` are evaluated when reached), so it needs the graph without MLIR: every op becomes a `Node`
with its attributes as Python values, its operands and results as integer value ids, its placement and, for
model functions, the compiled kernel (`KernelRef`: artifact file, symbol, signature) from the compile manifest.
Workers receive `Call`s built from nodes; neither imports MLIR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iree.compiler import ir

from hetagent.backend.executor import KernelRef
from hetagent.compiler.place import Placement, compute_ops, label_of
from hetagent.ir.optable import OPS

CONTROL_OPS = ("control.loop", "control.branch")


@dataclass(frozen=True)
class Block:
    args: tuple[int, ...]
    nodes: tuple["Node", ...]
    yields: tuple[int, ...]  # operands of the terminator (control.yield / agent.return)


@dataclass(frozen=True)
class Node:
    index: int
    op: str
    label: str  # the op's `name`, else "<op>#<index>": unique, used in reports and traces
    attrs: dict
    operands: tuple[int, ...]
    results: tuple[int, ...]
    regions: tuple[Block, ...] = ()
    placement: Placement | None = None
    kernel: KernelRef | None = None
    extend: KernelRef | None = None  # a prefill's extend kernel (the prefix cache), when compiled


@dataclass(frozen=True)
class Program:
    name: str
    sla_ms: float | None
    body: Block

    def nodes(self) -> list[Node]:
        """Every node, nested ones included, in walk order."""
        found = []

        def walk(block: Block):
            for node in block.nodes:
                found.append(node)
                for region in node.regions:
                    walk(region)

        walk(self.body)
        return found


def python_value(attr: ir.Attribute):
    """An attribute as a plain Python value (dicts for dictionary attributes)."""
    if isinstance(attr, ir.DictAttr):
        return {attr[i].name: python_value(attr[i].attr) for i in range(len(attr))}
    if isinstance(attr, ir.ArrayAttr):
        return [python_value(a) for a in attr]
    if isinstance(attr, (ir.BoolAttr, ir.IntegerAttr, ir.FloatAttr, ir.StringAttr, ir.FlatSymbolRefAttr)):
        return attr.value
    return str(attr)


def build_program(module: ir.Module, manifest: dict, out_dir: Path) -> Program:
    """The program of a placed module, with kernels from the manifest `compile_agent` wrote into `out_dir`."""
    kernels = {
        (k["symbol"], k["device"]): KernelRef(k["symbol"], str((out_dir / k["artifact"]["file"]).resolve()),
                                              k["function"], tuple(k["signature"]["weights"]))
        for k in manifest["kernels"] if "function" in k
    }
    # the manifest lists compute ops in the same walk order as compute_ops: it names each op's kernel
    kernel_of = {op: entry["kernel"] for op, entry in zip(compute_ops(module), manifest["ops"])}
    extend_of = {op: entry.get("extend_kernel") for op, entry in zip(compute_ops(module), manifest["ops"])}
    ids: dict = {}
    counter = iter(range(1 << 30))
    node_counter = iter(range(1 << 30))

    def value_id(value) -> int:
        if value not in ids:
            ids[value] = next(counter)
        return ids[value]

    def block_of(block) -> Block:
        args = tuple(value_id(a) for a in block.arguments)
        nodes, yields = [], ()
        for op in block.operations:
            op = op.operation
            if op.name in ("control.yield", "agent.return"):
                yields = tuple(value_id(v) for v in op.operands)
                continue
            nodes.append(node_of(op))
        return Block(args, tuple(nodes), yields)

    def node_of(op) -> Node:
        index = next(node_counter)
        attrs = {op.attributes[i].name: python_value(op.attributes[i].attr) for i in range(len(op.attributes))}
        placement = Placement.of(op)
        symbol, extend = kernel_of.get(op), extend_of.get(op)
        return Node(
            index=index,
            op=op.name,
            label=label_of(op) or f"{op.name}#{index}",
            attrs=attrs,
            operands=tuple(value_id(v) for v in op.operands),
            results=tuple(value_id(v) for v in op.results),
            regions=tuple(block_of(region.blocks[0]) for region in op.regions),
            placement=placement,
            kernel=kernels.get((symbol, placement.device)) if symbol and placement else None,
            extend=kernels.get((extend, placement.device)) if extend and placement else None,
        )

    graph = next(op.operation for op in module.body.operations if op.operation.name == "agent.graph")
    graph_attrs = {graph.attributes[i].name: python_value(graph.attributes[i].attr) for i in range(len(graph.attributes))}
    return Program(graph_attrs.get("sym_name", "agent"), graph_attrs.get("sla_ms"), block_of(graph.regions[0].blocks[0]))


def is_compute(node: Node) -> bool:
    return node.op not in CONTROL_OPS and OPS.get(node.op) is not None


def answer_decode(program: Program) -> Node | None:
    """The `llm.decode` whose text IS the agent's answer, or None: the node whose tokens may stream to a client
    as they are generated (`spec/serve.md`, streaming).

    Static and deliberately narrow: the agent returns exactly one value, and that value is the result of an
    `llm.decode` of the top-level graph — so the decode runs once per request and its detokenised text reaches
    the answer unchanged. Anything between them (a `data.transform` such as `pii_redact`, a tool, `audio.tts`),
    several returned values, or a decode nested in a loop or branch (a loop's earlier trips are not the answer,
    and which trip is the last is known only when it ends) gives None: such agents stream at answer level."""
    if len(program.body.yields) != 1:
        return None
    (answer,) = program.body.yields
    return next((n for n in program.body.nodes if n.op == "llm.decode" and answer in n.results), None)
