"""A small Python builder for agent modules, driven by the op table.

    b = AgentBuilder()
    with b.graph("rag", sla_ms=3000) as g:
        q = g.op("input.query", tokens=64)
        docs = g.op("memory.load", q, store="handbook", embed_model="all-minilm-l6-v2")
        answer = g.op("llm.call", q, docs, model="llama-3-8b", output_tokens=256)
        g.ret(answer)
    module = b.module

Python values become attributes by the kind the table gives them (str, int, float, dict...). Every op gets the
location of the Python line that built it, so verifier messages point at the author's code.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from iree.compiler import ir

from hetagent.errors import IRError
from hetagent.ir.module import new_context
from hetagent.ir.optable import OPS, Attr, OpDef

_HERE = str(Path(__file__).resolve())


def _caller_location(context: ir.Context) -> ir.Location:
    frame = sys._getframe(1)
    while frame and str(Path(frame.f_code.co_filename).resolve()) in (_HERE, contextlib.__file__):
        frame = frame.f_back
    if frame is None:
        return ir.Location.unknown(context)
    return ir.Location.file(frame.f_code.co_filename, frame.f_lineno, 1, context)


def to_attribute(definition: Attr, value: Any, context: ir.Context) -> ir.Attribute:
    """Convert a Python value to the MLIR attribute of the definition's kind (attributes pass through)."""
    if isinstance(value, ir.Attribute):
        return value
    with context:
        kind = definition.kind
        if kind in ("string", "dtype", "enum") and isinstance(value, str):
            return ir.StringAttr.get(value)
        if kind == "bool" and isinstance(value, bool):
            return ir.BoolAttr.get(value)
        if kind == "symbol" and isinstance(value, str):
            return ir.FlatSymbolRefAttr.get(value.removeprefix("@"))
        if kind in ("int", "tokens") and isinstance(value, int) and not isinstance(value, bool):
            return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return ir.FloatAttr.get_f64(float(value))
        if kind in ("tokens", "placement") and isinstance(value, dict):
            return ir.DictAttr.get({k: _plain_attribute(v) for k, v in value.items()})
    raise IRError(f"attribute '{definition.name}' must be {definition.kind}, got {value!r}")


def _plain_attribute(value: Any) -> ir.Attribute:
    if isinstance(value, str):
        return ir.StringAttr.get(value)
    if isinstance(value, bool):
        return ir.BoolAttr.get(value)
    if isinstance(value, int):
        return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)
    if isinstance(value, float):
        return ir.FloatAttr.get_f64(value)
    raise IRError(f"cannot store {value!r} in an attribute dictionary")


class BlockBuilder:
    """Appends ops to one block (a graph body, a loop body, a branch arm)."""

    def __init__(self, builder: "AgentBuilder", block: ir.Block):
        self._builder = builder
        self.block = block

    @property
    def args(self) -> tuple[ir.Value, ...]:
        return tuple(self.block.arguments)

    def op(self, op_name: str, /, *operands: ir.Value, result_types: Sequence[str] | None = None,
           loc: ir.Location | None = None, **attrs: Any):
        """Append op `op_name`; returns its single result, a tuple of results, or None when it has none.

        Result types default to the first type each result definition allows; pass `result_types` for
        polymorphic ops (data.transform, tool.invoke, xfer.recv, agent.call...). `loc` defaults to the calling
        Python line (a front-end passes its user's line).
        """
        opdef = self._builder.op_def(op_name)
        return _single(self._create(opdef, list(operands), result_types, attrs, loc=loc).results)

    def _create(self, opdef: OpDef, operands, result_types, attrs, regions: int = 0,
                loc: ir.Location | None = None) -> ir.Operation:
        context = self._builder.context
        if result_types is None:
            result_types = [r.types[0] for r in opdef.results if not r.variadic]
        attributes = {}
        for key, value in attrs.items():
            if value is None:
                continue
            definition = opdef.attr(key)
            if definition is None:
                valid = ", ".join(a.name for a in opdef.all_attrs)
                raise IRError(f"'{opdef.name}' has no attribute '{key}'; valid attributes: {valid}")
            attributes[key] = to_attribute(definition, value, context)
        with context, ir.InsertionPoint(self.block):
            return ir.Operation.create(
                opdef.name,
                results=[ir.Type.parse(t) for t in result_types],
                operands=operands,
                attributes=attributes,
                regions=regions,
                loc=loc or _caller_location(context),
            )

    def ret(self, *values: ir.Value) -> None:
        """Terminate an agent.graph body."""
        self.op("agent.return", *values)

    def yield_(self, *values: ir.Value) -> None:
        """Terminate a control.loop or control.branch region."""
        self.op("control.yield", *values)

    @contextlib.contextmanager
    def loop(self, *init: ir.Value, max_trips: int, expected_trips: float, until: str | None = None,
             loc: ir.Location | None = None, **attrs) -> Iterator["LoopBuilder"]:
        """A bounded control.loop carrying `init`; the body gets the carried values as `args`."""
        types = [str(v.type) for v in init]
        op = self._create(
            self._builder.op_def("control.loop"), list(init), types,
            dict(attrs, max_trips=max_trips, expected_trips=expected_trips, until=until), regions=1, loc=loc,
        )
        with self._builder.context, op.location:
            block = op.regions[0].blocks.append(*[ir.Type.parse(t) for t in types])
        yield LoopBuilder(self._builder, block, op)

    @contextlib.contextmanager
    def branch(self, condition: ir.Value, *, predicate: str, result_types: Sequence[str], p_then: float | None = None,
               loc: ir.Location | None = None, **attrs) -> Iterator["BranchBuilder"]:
        """A control.branch on `condition`; build `then_` and `else_`, each ending with `yield_`."""
        op = self._create(
            self._builder.op_def("control.branch"), [condition], list(result_types),
            dict(attrs, predicate=predicate, p_then=p_then), regions=2, loc=loc,
        )
        yield BranchBuilder(self._builder, op)


class LoopBuilder(BlockBuilder):
    def __init__(self, builder, block, op):
        super().__init__(builder, block)
        self.operation = op

    @property
    def results(self) -> tuple[ir.Value, ...]:
        return tuple(self.operation.results)


class BranchBuilder:
    def __init__(self, builder: "AgentBuilder", op: ir.Operation):
        self.operation = op
        with builder.context, op.location:
            self.then_ = BlockBuilder(builder, op.regions[0].blocks.append())
            self.else_ = BlockBuilder(builder, op.regions[1].blocks.append())

    @property
    def results(self) -> tuple[ir.Value, ...]:
        return tuple(self.operation.results)


class AgentBuilder:
    """Builds one module holding one or more agent graphs."""

    def __init__(self, context: ir.Context | None = None):
        self.context = context or new_context()
        with self.context:
            self.module = ir.Module.create(loc=_caller_location(self.context))

    @staticmethod
    def op_def(name: str) -> OpDef:
        if name not in OPS:
            import difflib

            close = difflib.get_close_matches(name, list(OPS), n=1)
            raise IRError(f"unknown agent op '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""))
        return OPS[name]

    @contextlib.contextmanager
    def graph(self, name: str, /, *, params: Sequence[str] = (), loc: ir.Location | None = None,
              **attrs) -> Iterator[BlockBuilder]:
        """A top-level agent.graph named `name`; `params` are its argument types (for sub-agents)."""
        top = BlockBuilder(self, self.module.body)
        op = top._create(self.op_def("agent.graph"), [], [], dict(attrs, sym_name=name), regions=1, loc=loc)
        with self.context, op.location:
            block = op.regions[0].blocks.append(*[ir.Type.parse(t) for t in params])
        yield BlockBuilder(self, block)


def _single(results) -> Any:
    values = tuple(results)
    if not values:
        return None
    return values[0] if len(values) == 1 else values
