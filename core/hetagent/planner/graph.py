"""The agent as tasks and dependencies: the decomposed IR's granular ops, how often each runs, what feeds what.

Every compute op of the (first) agent graph becomes a task, except `kv.transfer`: it is the edge between a prefill
and its decode, costed by where the two ends land. A task inside a `control.loop` runs `expected_trips` times
per request, in sequence (so its time on the request's path is multiplied too); inside a `control.branch` arm,
with that arm's probability (cost), while both arms are held to the SLA (latency: whichever is taken must fit).
Ops in a loop body or a branch arm also wait for what starts the loop or decides the branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hetagent.errors import HetagentError

# Bytes a value of each type carries between ops when the op gives no `bytes_out`: a prompt or tool result of
# a few thousand tokens, a handful of retrieved documents, a few seconds of 16 kHz audio.
PAYLOAD_BYTES = {
    "!agent.text": 16_384,
    "!agent.json": 16_384,
    "!agent.docs": 65_536,
    "!agent.audio": 262_144,
    "!agent.embedding": 4_096,
    "!agent.tokens": 4_096,
}


@dataclass(frozen=True)
class Task:
    label: str  # the op's `name` label; an unlabelled op its id ("<op name>#<k>", as the compiler and runtime name it)
    op: str
    attrs: dict[str, Any]
    executions: float  # expected runs per request
    labelled: bool
    location: str = ""


@dataclass(frozen=True)
class Dependency:
    src: int
    dst: int
    nbytes: float  # what moves (a KV cache is sized by the options instead: it depends on tokens and TP)
    kv: str | None = None  # label of the kv.transfer op this edge stands for


@dataclass
class TaskGraph:
    name: str
    tasks: list[Task] = field(default_factory=list)
    dependencies: list[Dependency] = field(default_factory=list)
    sla_ms: float | None = None
    sla_percentile: float | None = None
    kv_labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # kv.transfer label -> (prefill, decode)


def load_task_graph(path: str | Path) -> TaskGraph:
    from hetagent.agent import load_agent
    from hetagent.ir import decompose
    from hetagent.ir.passes import assign_ids

    module = assign_ids(decompose(load_agent(path)))
    return task_graph(module, str(path))


def task_graph(module, origin: str) -> TaskGraph:
    graphs = [op.operation for op in module.body.operations if op.operation.name == "agent.graph"]
    if not graphs:
        raise HetagentError(f"{origin}: no agent.graph to plan")
    graph = graphs[0]
    attrs = _plain_attrs(graph)
    builder = _Builder(TaskGraph(attrs.get("sym_name", origin), sla_ms=attrs.get("sla_ms"),
                                 sla_percentile=attrs.get("sla_percentile")), origin)
    builder.walk(graph.regions[0].blocks[0], weight=1.0, waits_for=frozenset())
    return builder.graph


class _Builder:
    def __init__(self, graph: TaskGraph, origin: str):
        self.graph, self.origin = graph, origin
        # value -> {(task, kv label)}: the tasks whose output it is (a kv.transfer's result keeps its label)
        self.producers: dict[Any, frozenset] = {}
        self.edges: dict[tuple[int, int], Dependency] = {}
        self.bytes_out: dict[Any, float] = {}  # values whose producer states its size (`bytes_out`)

    def sources(self, values) -> frozenset:
        found: set = set()
        for value in values:
            found |= self.producers.get(value, frozenset())
        return frozenset(found)

    def walk(self, block, weight: float, waits_for: frozenset) -> list:
        """Add the block's ops; return the producers of its terminator's operands."""
        for op in block.operations:
            op = op.operation
            name = op.name
            if name in ("agent.return", "control.yield"):
                return [self.sources([v]) for v in op.operands]
            if name == "agent.call":
                raise HetagentError(f"{self.origin}: agent.call ({op.location}) is not planned yet: inline the "
                                    "sub-agent's ops into the graph")
            if name == "control.loop":
                self._loop(op, weight, waits_for)
            elif name == "control.branch":
                self._branch(op, weight, waits_for)
            elif name == "kv.transfer":
                (prefill, _), = self.sources(op.operands)  # decompose feeds a transfer from exactly one prefill
                label = _plain_attrs(op).get("name") or _plain_attrs(op)["id"]
                self.producers[op.results[0]] = frozenset({(prefill, label)})
            else:
                self._task(op, weight, waits_for)
        return []

    def _loop(self, op, weight: float, waits_for: frozenset) -> None:
        attrs = _plain_attrs(op)
        body = op.regions[0].blocks[0]
        for argument, operand in zip(body.arguments, op.operands):
            self.producers[argument] = self.sources([operand])
        starts = waits_for | self.sources(op.operands)
        yielded = self.walk(body, weight * float(attrs["expected_trips"]), starts)
        for result, sources in zip(op.results, yielded):
            self.producers[result] = sources

    def _branch(self, op, weight: float, waits_for: frozenset) -> None:
        p_then = float(_plain_attrs(op).get("p_then", 0.5))
        decided = waits_for | self.sources(op.operands)
        arms = [self.walk(region.blocks[0], weight * p, decided) for region, p in zip(op.regions, (p_then, 1 - p_then))]
        for index, result in enumerate(op.results):
            self.producers[result] = frozenset().union(*(arm[index] for arm in arms if index < len(arm)))

    def _task(self, op, weight: float, waits_for: frozenset) -> None:
        attrs = _plain_attrs(op)
        label = attrs.get("name")
        if label is None:
            label = attrs["id"]  # the id the compiled agent gives it too: a plan's ops match a run's
        elif any(t.label == label for t in self.graph.tasks):
            raise HetagentError(f"{self.origin}: two ops are labelled {label!r} ({op.location}): a plan names ops "
                                "by label, so labels must be unique")
        index = len(self.graph.tasks)
        self.graph.tasks.append(Task(label, op.name, attrs, weight, "name" in attrs, str(op.location)))
        payload = {}
        for operand in op.operands:
            for source in self.producers.get(operand, ()):
                payload[source] = payload.get(source, 0.0) + self.bytes_of(operand)
        for source in waits_for:
            payload.setdefault(source, 0.0)  # ordering only: nothing moves
        for (src, kv), nbytes in payload.items():
            key = (src, index)
            edge = self.edges.get(key)
            merged = Dependency(src, index, nbytes + (edge.nbytes if edge else 0.0), kv or (edge.kv if edge else None))
            self.edges[key] = merged
            if kv:
                self.graph.kv_labels[kv] = (src, index)
        self.graph.dependencies = list(self.edges.values())
        for result in op.results:
            self.producers[result] = frozenset({(index, None)})
            if "bytes_out" in attrs:
                self.bytes_out[result] = float(attrs["bytes_out"])

    def bytes_of(self, value) -> float:
        return self.bytes_out.get(value, PAYLOAD_BYTES.get(str(value.type), 0.0))


def _plain_attrs(op) -> dict[str, Any]:
    return {op.attributes[i].name: _plain(op.attributes[i].attr) for i in range(len(op.attributes))}


def _plain(attr) -> Any:
    from iree.compiler import ir

    if isinstance(attr, (ir.StringAttr, ir.BoolAttr, ir.IntegerAttr, ir.FloatAttr)):
        return attr.value
    if isinstance(attr, ir.DictAttr):
        return {attr[i].name: _plain(attr[i].attr) for i in range(len(attr))}
    return str(attr)
