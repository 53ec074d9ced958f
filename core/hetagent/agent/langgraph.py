"""Import a LangGraph graph (`StateGraph` or compiled) into the agent IR (`spec/frontends.md`).

Needs the `langgraph` package (`pip install 'hetagent[langgraph]'`). The graph's state is carried as text: the
conversation so far (`conv`), the last node's output (`last`, the answer once the graph ends) and the last
routing decision (`route`). Each node becomes ops by what it is:

    a chat model (the node is one, or its function uses one)   -> llm.call on conv
    a ToolNode whose tools are all registered hetagent tools    -> tool.invoke of each (a branch picks the one the
                                                                   model's <tool_call> names)
    a retriever (the node is one, or its function uses one)     -> memory.load on last
    anything else (arbitrary Python, other ToolNodes)           -> data.transform running the node itself on CPU

A conditional edge becomes a data.transform running the routing function (on CPU) and a control.branch per
destination; a cycle becomes a control.loop whose first node routes, bounded by the graph's recursion limit.
Node metadata `{"hetagent": {...}}` overrides what is read from the objects: model, dtype, input_tokens,
output_tokens, store, embed_model, top_k, latency_ms, timeout_ms, expected_trips, max_trips, op ("llm", "tool",
"memory" or "python"). Python functions the agent runs are named `langgraph:<graph>#<what>` in the IR; the runtime
resolves them through `reference` (the graph is imported again where they run).
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from iree.compiler import ir

from hetagent.agent.trace import JSON, TEXT
from hetagent.errors import HetagentError
from hetagent.ir.builder import AgentBuilder, BlockBuilder

PREFIX = "langgraph:"
START, END = "__start__", "__end__"
TOOLS_GROUP = "hetagent.tools"  # the entry-point group registered tools live in (spec/runtime.md)
TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)  # how a model asks for a tool (spec/runtime.md)

# What the importer assumes where neither the node's metadata nor its objects say (printed with every import).
DEFAULTS = {"model": "llama-3-8b", "output_tokens": 256, "embed_model": "all-minilm-l6-v2", "top_k": 4,
            "expected_trips": 2.0}


def _langgraph():
    try:
        import langgraph.graph.state as state
        from langgraph.prebuilt import ToolNode
    except ImportError as exc:
        raise HetagentError(f"importing a LangGraph graph needs the langgraph package: pip install "
                            f"'hetagent[langgraph]' ({exc})") from None
    return state, ToolNode


@dataclass
class Mapped:
    """One node and what it became."""

    node: str
    kind: str  # llm | tool | tools | memory | python
    attrs: dict[str, Any]
    how: str
    where: tuple[str, int]
    tools: tuple[str, ...] = ()


@dataclass
class Imported:
    module: ir.Module
    name: str
    nodes: list[Mapped]
    edges: list[tuple[str, str]]
    assumed: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        lines = [f"langgraph {self.name}: node {m.node!r} -> {m.how}" for m in self.nodes]
        lines += [f"langgraph {self.name}: {what} -> {became}" for what, became in self.edges]
        lines += [f"langgraph {self.name}: assumed {a}" for a in self.assumed]
        return lines


def import_graph(graph, *, name: str, origin: str) -> Imported:
    """Map `graph` (a StateGraph or a compiled graph) to an agent module; `origin` is how to import it again
    (`path/file.py:NAME` or `module:NAME`), written into the references the runtime resolves."""
    state, _ = _langgraph()
    builder = graph.builder if isinstance(graph, state.CompiledStateGraph) else graph
    if not isinstance(builder, state.StateGraph):
        raise HetagentError(f"{origin}: {type(graph).__name__} is not a LangGraph StateGraph or compiled graph")
    limit = (getattr(graph, "config", None) or {}).get("recursion_limit")
    return _Importer(builder, name, _absolute(origin), limit).run()


def _absolute(origin: str) -> str:
    where, _, name = origin.rpartition(":")
    return f"{Path(where).resolve()}:{name}" if where.endswith(".py") else origin


class _Importer:
    def __init__(self, builder, name: str, origin: str, recursion_limit: int | None):
        self.builder, self.name, self.origin = builder, name, origin
        self.limit = recursion_limit
        self.edges: list[tuple[str, str]] = []  # (edge or cycle, what it became)
        self.assumed: list[str] = []
        self.labels: dict[str, int] = {}
        self.nodes: dict[str, Mapped] = {}
        for node, spec in builder.nodes.items():
            self.nodes[node] = self._classify(node, spec)
        self.out = self._successors()

    # ------------------------------------------------------------------------------------------ nodes

    def _classify(self, node: str, spec) -> Mapped:
        _, ToolNode = _langgraph()
        meta = dict((spec.metadata or {}).get("hetagent", {}))
        runnable = spec.runnable
        function = getattr(runnable, "func", None)
        where = _source(function or runnable)
        forced = meta.pop("op", None)
        if spec.ends:
            raise HetagentError(f"{self._at(where)}node {node!r} routes with Command(goto=...): hetagent imports "
                                "routing written as conditional edges (add_conditional_edges); rewrite it as one")
        if forced not in (None, "llm", "tool", "memory", "python"):
            raise HetagentError(f"{self._at(where)}node {node!r}: metadata hetagent.op {forced!r}: expected llm, tool, "
                                "memory or python")
        if forced == "tool" or (forced is None and isinstance(runnable, ToolNode)):
            if not isinstance(runnable, ToolNode):
                raise HetagentError(f"{self._at(where)}node {node!r}: hetagent.op 'tool' needs a ToolNode")
            tools = tuple(runnable.tools_by_name)
            registered = _registered_tools()
            missing = [t for t in tools if t not in registered]
            attrs = {k: meta[k] for k in ("latency_ms", "timeout_ms", "endpoint") if k in meta}
            if not missing:
                return Mapped(node, "tools", attrs, f"tool.invoke of {', '.join(tools)} (registered hetagent tools"
                              + (", the one the model's <tool_call> names" if len(tools) > 1 else "") + ")", where, tools)
            return Mapped(node, "python", {}, f"data.transform running the ToolNode on CPU ({', '.join(missing)} not "
                          f"registered under {TOOLS_GROUP})", where)
        model = _find(runnable, _chat_model_class()) if forced in (None, "llm") else None
        if forced == "llm" or model is not None:
            attrs, said = self._llm_attrs(node, model, meta)
            return Mapped(node, "llm", attrs, f"llm.call {attrs['model']} ({said})", where)
        retriever = _find(runnable, _retriever_class()) if forced in (None, "memory") else None
        if forced == "memory" or retriever is not None:
            attrs, said = self._memory_attrs(node, retriever, meta)
            return Mapped(node, "memory", attrs, f"memory.load from store {attrs['store']!r} ({said})", where)
        return Mapped(node, "python", {}, "data.transform running the node's Python on CPU", where)

    def _llm_attrs(self, node: str, model, meta: dict) -> tuple[dict, str]:
        found = {"model": _first_attr(model, ("model_name", "model", "model_id")),
                 "output_tokens": _first_attr(model, ("max_tokens", "max_new_tokens", "num_predict", "max_output_tokens"))}
        attrs, said = {}, []
        for key in ("model", "output_tokens", "dtype", "input_tokens"):
            if key in meta:
                attrs[key] = meta[key]
                said.append(f"{key} from metadata")
            elif found.get(key) is not None:
                attrs[key] = found[key]
                said.append(f"{key} from the model object")
            elif key in DEFAULTS:
                attrs[key] = DEFAULTS[key]
                said.append(f"{key} {DEFAULTS[key]} by default")
                self._assume(f"{key} = {DEFAULTS[key]!r} for node {node!r}")
        return attrs, ", ".join(said)

    def _memory_attrs(self, node: str, retriever, meta: dict) -> tuple[dict, str]:
        k = (getattr(retriever, "search_kwargs", None) or {}).get("k") or getattr(retriever, "k", None)
        attrs = {"store": meta.get("store", node), "embed_model": meta.get("embed_model", DEFAULTS["embed_model"]),
                 "top_k": meta.get("top_k", k or DEFAULTS["top_k"])}
        said = []
        for key in attrs:
            if key in meta:
                said.append(f"{key} from metadata")
            elif key == "top_k" and k:
                said.append("top_k from the retriever")
            else:
                said.append(f"{key} {attrs[key]!r} by default")
                self._assume(f"{key} = {attrs[key]!r} for node {node!r}")
        return attrs, ", ".join(said)

    def _assume(self, what: str) -> None:
        self.assumed.append(what)

    # ------------------------------------------------------------------------------------------ edges

    def _successors(self) -> dict[str, tuple]:
        b = self.builder
        if getattr(b, "waiting_edges", None):
            sources, target = next(iter(b.waiting_edges))
            raise HetagentError(f"{self.origin}: the edge from {list(sources)} to {target!r} waits for several nodes "
                                "(a join): hetagent imports graphs whose nodes run one at a time")
        out: dict[str, tuple] = {}
        for source, target in sorted(b.edges):
            if source in out:
                raise HetagentError(f"{self._at_node(source)}node {source!r} has edges to {out[source][1]!r} and "
                                    f"{target!r} (they would run in parallel): hetagent imports graphs whose nodes run "
                                    "one at a time; route with a conditional edge instead")
            out[source] = ("edge", target)
        for source, branches in b.branches.items():
            if source in out or len(branches) > 1:
                raise HetagentError(f"{self._at_node(source)}node {source!r} has more than one way out (edges and "
                                    "conditional edges together): hetagent imports one conditional edge per node")
            (route, spec), = branches.items()
            if not spec.ends:
                raise HetagentError(f"{self._at_node(source)}the conditional edge {route!r} from node {source!r} does not "
                                    "declare its destinations: pass a path_map to add_conditional_edges, or annotate "
                                    "the routing function's return type with Literal[...]")
            out[source] = ("branch", route, spec)
        for node in self.nodes:
            if node not in out:
                raise HetagentError(f"{self._at_node(node)}node {node!r} has no outgoing edge (add one to END)")
        if START not in out or out[START][0] != "edge":
            raise HetagentError(f"{self.origin}: the graph must start with one edge from START to a node")
        return out

    def _targets(self, node: str) -> list[str]:
        kind = self.out[node]
        return [kind[1]] if kind[0] == "edge" else list(dict.fromkeys(kind[2].ends.values()))

    def _cycle_of(self, header: str) -> set[str]:
        """The nodes on some cycle through `header` (its strongly connected component)."""
        def reach(start: str, forward: bool) -> set[str]:
            seen, todo = set(), [start]
            while todo:
                n = todo.pop()
                nexts = self._targets(n) if forward else [m for m in self.nodes if n in self._targets(m)]
                for m in nexts:
                    if m in self.nodes and m not in seen:
                        seen.add(m)
                        todo.append(m)
            return seen

        return reach(header, True) & reach(header, False)

    # ------------------------------------------------------------------------------------------ emission

    def run(self) -> Imported:
        b = AgentBuilder()
        with b.graph(self.name, loc=self._loc(b, None),
                     description=f"imported from LangGraph ({self.origin})") as g:
            q = g.op("input.query")
            conv, last, _ = self._walk(g, self.out[START][1], (q, q, q), None, ())
            g.op("agent.return", last)
        nodes = [self.nodes[n] for n in self.nodes]
        return Imported(b.module, self.name, nodes, self.edges, self.assumed)

    def _walk(self, b: BlockBuilder, node: str, state: tuple, loop: tuple | None, path: tuple) -> tuple:
        """Emit from `node` until the path ends (END, back to the loop's first node, or out of the loop): the state
        the path ends with."""
        if node == END:
            return state
        if loop is not None and (node == loop[0] or node not in loop[1]):
            return state
        if node in path:
            raise HetagentError(f"{self._at_node(node)}node {node!r} starts a cycle inside the cycle through "
                                f"{loop[0] if loop else node!r}: hetagent imports cycles that all pass through the node "
                                "that decides whether to go round again")
        if loop is None and node in (members := self._cycle_of(node)):
            return self._loop(b, node, members, state, loop, path)
        return self._step(b, node, state, loop, path + (node,))

    def _step(self, b: BlockBuilder, node: str, state: tuple, loop, path) -> tuple:
        conv, last, route = state
        out = self._node_ops(b, self.nodes[node], conv, last)
        kind = self.out[node]
        if kind == ("edge", END) and loop is None:  # the answer: nothing reads the conversation any more
            self._edge(f"edge {node} -> {END}", "the agent's answer")
            return conv, out, route
        conv = self._op(b, "data.transform", conv, out, fn="concat", result_types=[TEXT])
        if kind[0] == "edge":
            self._edge(f"edge {node} -> {kind[1]}", "in sequence")
            return self._walk(b, kind[1], (conv, out, route), loop, path)
        _, name, spec = kind
        route = self._op(b, "data.transform", out, fn=self._ref(f"route:{node}"), result_types=[TEXT],
                         name=self._label(f"{node}.route"), loc_of=self.nodes[node].where)
        targets = self._targets(node)
        self._edge(f"conditional edge {name} from {node}", f"data.transform running {name} on CPU, then "
                   + (f"control.branch over {', '.join(targets)}" if len(targets) > 1 else f"on to {targets[0]}"))
        return self._choose(b, route, targets, (conv, out, route), loop, path)

    def _choose(self, b: BlockBuilder, route, targets: list[str], state: tuple, loop, path) -> tuple:
        if len(targets) == 1:
            return self._walk(b, targets[0], state, loop, path)
        with b.branch(route, predicate=f"{PREFIX}route={targets[0]}", result_types=[TEXT] * 3,
                      p_then=round(1 / len(targets), 4), loc=self._loc(b, None)) as choice:
            choice.then_.op("control.yield", *self._walk(choice.then_, targets[0], state, loop, path))
            choice.else_.op("control.yield", *self._choose(choice.else_, route, targets[1:], state, loop, path))
        return choice.results

    def _loop(self, b: BlockBuilder, header: str, members: set[str], state: tuple, outer, path) -> tuple:
        kind = self.out[header]
        if kind[0] != "branch":
            raise HetagentError(f"{self._at_node(header)}the cycle through {sorted(members)} enters at node {header!r}, "
                                "which has no conditional edge: hetagent imports cycles whose first node decides (a "
                                "conditional edge) whether to go round again")
        exits = [t for t in self._targets(header) if t not in members]
        if len(exits) != 1:
            raise HetagentError(f"{self._at_node(header)}node {header!r} leaves its cycle to {exits or 'nowhere'}: "
                                "hetagent imports cycles with exactly one way out")
        for member in members - {header}:
            if any(t not in members for t in self._targets(member)):
                raise HetagentError(f"{self._at_node(member)}node {member!r} leaves the cycle through {header!r}: only "
                                    f"{header!r} (the node that routes) may")
        meta = (self.builder.nodes[header].metadata or {}).get("hetagent", {})
        steps = len(self._cycle_path(header, members)) - 1  # super-steps of one trip round the cycle
        limit = self.limit if self.limit is not None else _default_recursion_limit()
        max_trips = int(meta.get("max_trips", max(1, int(limit) // steps)))
        expected = float(meta.get("expected_trips", min(DEFAULTS["expected_trips"], max_trips)))
        if "expected_trips" not in meta:
            self._assume(f"expected_trips = {expected} for the cycle through {header!r}")
        self._edge(f"cycle {' -> '.join(self._cycle_path(header, members))}", f"control.loop (max_trips {max_trips}: "
                   f"recursion limit {limit} / {steps} steps a trip{'; from metadata' if 'max_trips' in meta else ''}, "
                   f"expected_trips {expected}), ends when {header} routes to {exits[0]}")
        with b.loop(*state, max_trips=max_trips, expected_trips=expected, until=f"{PREFIX}route={exits[0]}",
                    loc=self._loc(b, self.nodes[header].where)) as body:
            body.op("control.yield", *self._step(body, header, body.args, (header, members), ()))
        return self._walk(b, exits[0], body.results, outer, path)

    def _cycle_path(self, header: str, members: set[str]) -> list[str]:
        path, node = [header], header
        while True:
            nxt = next(t for t in self._targets(node) if t in members)
            if nxt == header or nxt in path:
                return path + [header]
            path.append(nxt)
            node = nxt

    def _node_ops(self, b: BlockBuilder, m: Mapped, conv, last):
        """The node's ops; its output as text."""
        where = m.where
        if m.kind == "llm":
            return self._op(b, "llm.call", conv, name=self._label(m.node), loc_of=where, **m.attrs)
        if m.kind == "memory":
            docs = self._op(b, "memory.load", last, name=self._label(m.node), loc_of=where, **m.attrs)
            return self._op(b, "data.transform", docs, fn="concat", result_types=[TEXT], loc_of=where)
        if m.kind == "tools":
            return self._tools(b, m, list(m.tools), last)
        return self._op(b, "data.transform", conv, fn=self._ref(f"node:{m.node}"), result_types=[TEXT],
                        name=self._label(m.node), loc_of=where)

    def _tools(self, b: BlockBuilder, m: Mapped, tools: list[str], last):
        if len(tools) == 1:
            result = self._op(b, "tool.invoke", last, tool=tools[0], name=self._label(f"{m.node}.{tools[0]}"),
                              result_types=[JSON], loc_of=m.where, **m.attrs)
            return self._op(b, "data.transform", result, fn="concat", result_types=[TEXT], loc_of=m.where)
        with b.branch(last, predicate=f"{PREFIX}calls={tools[0]}", result_types=[TEXT], p_then=round(1 / len(tools), 4),
                      loc=self._loc(b, m.where)) as choice:
            choice.then_.op("control.yield", self._tools(choice.then_, m, tools[:1], last))
            choice.else_.op("control.yield", self._tools(choice.else_, m, tools[1:], last))
        return choice.results[0]

    # ------------------------------------------------------------------------------------------ helpers

    def _op(self, b: BlockBuilder, op: str, *operands, loc_of=None, **attrs):
        return b.op(op, *operands, loc=self._loc(b, loc_of), **attrs)

    def _loc(self, b, where: tuple[str, int] | None) -> ir.Location:
        context = b._builder.context if isinstance(b, BlockBuilder) else b.context
        if where is None or not where[1]:
            return ir.Location.name(self.origin, context=context)
        return ir.Location.file(where[0], where[1], 1, context)

    def _label(self, name: str) -> str:
        """Op labels are unique (a node reached on two paths is emitted twice)."""
        count = self.labels.get(name, 0)
        self.labels[name] = count + 1
        return name if count == 0 else f"{name}#{count}"

    def _ref(self, what: str) -> str:
        return f"{PREFIX}{self.origin}#{what}"

    def _edge(self, what: str, became: str) -> None:
        if (what, became) not in self.edges:
            self.edges.append((what, became))

    def _at(self, where: tuple[str, int]) -> str:
        return f"{where[0]}:{where[1]}: " if where[1] else f"{self.origin}: "

    def _at_node(self, node: str) -> str:
        return self._at(self.nodes[node].where) if node in self.nodes else f"{self.origin}: "


def _source(obj) -> tuple[str, int]:
    """Where the user wrote a node (its function), or ("", 0) for LangGraph's own classes (ToolNode)."""
    try:
        target = inspect.unwrap(obj) if callable(obj) and not isinstance(obj, type) else obj
        if not (inspect.isfunction(target) or inspect.ismethod(target) or isinstance(target, type)):
            target = type(target)
        path = inspect.getsourcefile(target) or ""
        if target.__module__.split(".")[0] in ("langgraph", "langchain_core", "langchain"):
            return "", 0
        return path, inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return "", 0


def _first_attr(obj, names) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            return value
    return None


def _chat_model_class():
    from langchain_core.language_models import BaseChatModel

    return BaseChatModel


def _retriever_class():
    from langchain_core.retrievers import BaseRetriever

    return BaseRetriever


def _find(obj, cls, depth: int = 0):
    """An instance of `cls` that `obj` is or uses: a bound or chained runnable, or a function's closure or globals."""
    if depth > 3 or obj is None:
        return None
    if isinstance(obj, cls):
        return obj
    for attr in ("bound", "first", "last"):  # RunnableBinding (model.bind_tools), RunnableSequence (prompt | model)
        inner = getattr(obj, attr, None) if not inspect.isfunction(obj) else None
        if inner is not None and (found := _find(inner, cls, depth + 1)) is not None:
            return found
    for step in getattr(obj, "steps", None) or getattr(obj, "middle", None) or ():
        if (found := _find(step, cls, depth + 1)) is not None:
            return found
    function = getattr(obj, "func", None) if not inspect.isfunction(obj) else obj
    if inspect.ismethod(function):
        function = function.__func__
    if inspect.isfunction(function):
        values = [c.cell_contents for c in (function.__closure__ or ()) if _filled(c)]
        values += [function.__globals__[n] for n in function.__code__.co_names if n in function.__globals__]
        for value in values:
            if isinstance(value, cls):
                return value
            if not inspect.ismodule(value) and not isinstance(value, type) and (
                    found := _find(value, cls, depth + 1)) is not None:
                return found
    return None


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _registered_tools() -> set[str]:
    return {ep.name for ep in entry_points(group=TOOLS_GROUP)}


def _default_recursion_limit() -> int:
    from langgraph._internal._config import DEFAULT_RECURSION_LIMIT

    return int(DEFAULT_RECURSION_LIMIT)


# ------------------------------------------------------------------------------------------------ run time


def tool_calls(text: str) -> list[dict]:
    """The tool calls written in a model's text, as LangChain tool-call dicts."""
    calls = []
    for i, match in enumerate(TOOL_CALL.finditer(text)):
        try:
            request = json.loads(match.group(1))
            calls.append({"name": str(request["tool"]), "args": dict(request.get("arguments", {})), "id": f"call_{i}",
                          "type": "tool_call"})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a malformed call is text, as the runtime treats it
    return calls


@functools.cache
def reference(name: str):
    """The Python function a `langgraph:` name in an imported agent stands for (transform or predicate)."""
    body = name.removeprefix(PREFIX)
    if "#" not in body:  # route=<node> / calls=<tool>: predicates that need no graph
        kind, _, arg = body.partition("=")
        if kind == "route":
            return lambda values, trip: _text(values[-1]) == arg
        if kind == "calls":
            return lambda values, trip: any(c["name"] == arg for c in tool_calls(_text(values[0])))
        raise HetagentError(f"unknown langgraph predicate {name!r}")
    origin, _, what = body.rpartition("#")
    kind, _, node = what.partition(":")
    from hetagent.agent.source import load_object

    state, _ = _langgraph()
    graph = load_object(origin)
    builder = graph.builder if isinstance(graph, state.CompiledStateGraph) else graph
    if kind == "route":
        (route, spec), = builder.branches[node].items()
        return functools.partial(_route, spec)
    if kind == "node":
        return functools.partial(_node, builder.nodes[node].runnable)
    raise HetagentError(f"unknown langgraph reference {name!r}")


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _route(spec, last) -> str:
    """Run a routing function on the node output it routes (as the last message): the destination node."""
    from langchain_core.messages import AIMessage

    text = _text(last)
    key = spec.path.invoke({"messages": [AIMessage(content=text, tool_calls=tool_calls(text))]})
    return spec.ends.get(key, key) if spec.ends else key


def _node(runnable, conv) -> str:
    """Run a node on the conversation so far (as one message): the text of what it adds."""
    from langchain_core.messages import BaseMessage, HumanMessage

    update = runnable.invoke({"messages": [HumanMessage(content=_text(conv))]})
    added = update.get("messages", update) if isinstance(update, dict) else update
    added = added if isinstance(added, list) else [added]
    return "\n\n".join(m.content if isinstance(m, BaseMessage) else _text(m) for m in added)
