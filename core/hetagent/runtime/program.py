"""The agent as the runtime walks it: plain Python nodes read once from the compiled agent's placed module.

The engine interprets the graph per request (ops run as their operands become ready; `control.loop` and
`control.branch` are evaluated when reached), so it needs the graph without MLIR: every op becomes a `Node`
with its id (the op's `id` attribute, as in the compile manifest), its attributes as Python values, its operands
and results as integer value ids, its placement and, for model functions, the compiled kernel (`KernelRef`:
artifact file, symbol, signature) the op's `kernel` attribute names for its device in the manifest. Workers
receive `Call`s built from nodes; neither imports MLIR.
"""

from __future__ import annotations

from dataclasses import dataclass

from iree.compiler import ir

from hetagent.backend.executor import KernelRef
from hetagent.compiler.driver import CompiledAgent
from hetagent.errors import HetagentError
from hetagent.ir.optable import OPS
from hetagent.ir.passes import op_id
from hetagent.plan import Placement

CONTROL_OPS = ("control.loop", "control.branch")


@dataclass(frozen=True)
class Block:
    args: tuple[int, ...]
    nodes: tuple["Node", ...]
    yields: tuple[int, ...]  # operands of the terminator (control.yield / agent.return)


@dataclass(frozen=True)
class Node:
    index: int  # walk order in this program (the engine's own bookkeeping; nothing outside matches by it)
    op: str
    label: str  # the op's id (`id` attribute): unique, shared with the manifest, reports and traces
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


def build_program(compiled: CompiledAgent) -> Program:
    """The program of a compiled agent: its placed module's graph, each op's kernel from the manifest by the
    symbol and device the op names."""
    module = compiled.module

    def kernel_for(op, placement: Placement | None, attribute: str = "kernel") -> KernelRef | None:
        """The kernel an op names in `attribute` (`kernel`, or a prefill's `extend_kernel`)."""
        if attribute not in op.attributes or placement is None:
            return None
        symbol = op.attributes[attribute].value
        entry = compiled.kernel(symbol, placement.device)
        if entry is None:
            raise HetagentError(f"{compiled.out_dir}: the manifest has no kernel {symbol} for {placement.device}, "
                                f"which op '{op_id(op)}' ({op.name}) runs")
        if "function" not in entry:
            return None  # a hand-written kernel: run by its backend's executor, not as a model function
        return KernelRef(symbol, str(compiled.artifact(entry)), entry["function"], tuple(entry["signature"]["weights"]))

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
        # `id` and the kernels are the node's label and kernels: not repeated in the attributes every call carries
        attrs = {a.name: python_value(a.attr) for a in (op.attributes[i] for i in range(len(op.attributes)))
                 if a.name not in ("id", "kernel", "extend_kernel")}
        placement = Placement.of(op)
        if op_id(op) is None:
            raise HetagentError(f"op {op.name} has no id: the runtime runs a module `compile_agent` compiled")
        return Node(
            index=index,
            op=op.name,
            label=op_id(op),
            attrs=attrs,
            operands=tuple(value_id(v) for v in op.operands),
            results=tuple(value_id(v) for v in op.results),
            regions=tuple(block_of(region.blocks[0]) for region in op.regions),
            placement=placement,
            kernel=kernel_for(op, placement),
            extend=kernel_for(op, placement, "extend_kernel"),
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
