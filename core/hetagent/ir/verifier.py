"""The agent-dialect verifier: checks a module against the op table and explains every problem.

Messages follow MLIR's shape — `file:line:col: error: 'op' op <what is wrong>` — and say what would be valid.
Beyond per-op checks (operands, results, attributes, regions, terminators) it enforces the dialect's
structural rules: agent ops live inside an `agent.graph`, dependencies are acyclic (cycles are written with a
bounded `control.loop`), and `agent.call` names an existing graph.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from iree.compiler import ir

from hetagent.errors import IRError
from hetagent.graphs import find_cycle
from hetagent.dtypes import DTYPES
from hetagent.ir.context import location_of
from hetagent.ir.module import functions
from hetagent.ir.optable import ATTR_KINDS, MODEL_ATTRS, MODEL_ID, OPS, TOKEN_DISTRIBUTIONS, Attr, OpDef, is_agent_op

_PLACEMENT_FIELDS = {"device": "string", "backend": "string", "replicas": "int", "tp": "int", "batch": "int",
                     "partition": "index"}


@dataclass(frozen=True)
class Diagnostic:
    location: str
    op: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: error: '{self.op}' op {self.message}"


def check(module: ir.Module, *, decomposed: bool = False) -> list[Diagnostic]:
    """Every problem in the module (empty when it verifies). `decomposed` also rejects high-level ops that
    the decompose pass should have split."""
    return _Checker(module, decomposed).run()


def verify(module: ir.Module, *, decomposed: bool = False, what: str | None = None) -> ir.Module:
    """Return the module unchanged if it verifies; raise `IRError` listing every problem otherwise."""
    diagnostics = check(module, decomposed=decomposed)
    if diagnostics:
        origin = what or _origin(module)
        listing = "\n".join(str(d) for d in diagnostics)
        count = f"{len(diagnostics)} problem{'s' if len(diagnostics) > 1 else ''}"
        raise IRError(f"{origin}: the agent module does not verify ({count}):\n{listing}", diagnostics)
    return module


def _origin(module: ir.Module) -> str:
    return location_of(module.operation).rsplit(":", 2)[0]


def _suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class _Checker:
    def __init__(self, module: ir.Module, decomposed: bool):
        self.module = module
        self.decomposed = decomposed
        self.context = module.context
        self.diagnostics: list[Diagnostic] = []
        self.graphs: dict[str, ir.Operation] = {}
        self.functions: set[str] = set()  # module-level func.func names: what `kernel` attributes may name

    def error(self, op, message: str) -> None:
        self.diagnostics.append(Diagnostic(location_of(op), op.name, message))

    def run(self) -> list[Diagnostic]:
        try:
            self.module.operation.verify()
        except ir.MLIRError as exc:
            for diag in exc.error_diagnostics:
                self.diagnostics.append(Diagnostic(location_of(diag), "mlir", diag.message))
            return self.diagnostics
        self._collect_graphs(self.module.body)
        self.functions = set(functions(self.module))
        has_graph = False
        for op in self.module.body.operations:
            op = op.operation
            if op.name == "agent.graph":
                has_graph = True
                self.check_op(op, parent=None)
            elif is_agent_op(op.name) and op.name in OPS:
                self.error(op, "must be inside an agent.graph (only graphs and compute kernels live at module level)")
            elif not self.context.is_registered_operation(op.name):
                self.error(op, "is not an op of the agent dialects or of MLIR" + _suggest(op.name, OPS))
        self.check_calls()
        if not has_graph:
            self.diagnostics.append(
                Diagnostic(location_of(self.module.operation), "builtin.module", "contains no agent.graph")
            )
        return self.diagnostics

    def _collect_graphs(self, block: ir.Block) -> None:
        for op in block.operations:
            op = op.operation
            if op.name == "func.func":
                continue  # a compute kernel: tensor code, never agent graphs (and thousands of ops to skip)
            if op.name == "agent.graph" and "sym_name" in op.attributes:
                name = op.attributes["sym_name"]
                if isinstance(name, ir.StringAttr):
                    if name.value in self.graphs:
                        self.error(op, f"redefines agent '{name.value}' (names must be unique in a module)")
                    self.graphs[name.value] = op
            for region in op.regions:
                for inner in region.blocks:
                    self._collect_graphs(inner)

    # ------------------------------------------------------------------------------------------ one op

    def check_op(self, op, parent) -> None:
        opdef = OPS.get(op.name)
        if opdef is None:
            if self.context.is_registered_operation(op.name):
                self.error(op, "cannot appear inside an agent graph: only agent ops can; compute kernels are "
                               "func.func ops at module level, referenced with a `kernel = @name` attribute")
            else:
                self.error(op, "is unknown" + _suggest(op.name, OPS) + " (agent ops are listed in spec/dialect.md)")
            return
        if self.decomposed and opdef.decomposes_to:
            self.error(op, f"is high-level; run decompose to split it into {', '.join(opdef.decomposes_to)}")
        if opdef.terminator:
            self._check_terminator_parent(op, opdef, parent)
        self._check_values(op, opdef, "operand", list(op.operands), opdef.operands)
        self._check_values(op, opdef, "result", list(op.results), opdef.results)
        self._check_attrs(op, opdef)
        self._check_kernel(op)
        self._check_regions(op, opdef)
        check = getattr(self, "_check_" + op.name.replace(".", "_"), None)
        if check:
            check(op)

    def _check_terminator_parent(self, op, opdef: OpDef, parent) -> None:
        expected = {"agent.return": ("agent.graph",), "control.yield": ("control.loop", "control.branch")}[opdef.name]
        if parent is None or parent.name not in expected:
            self.error(op, f"must terminate a region of {' or '.join(expected)}")
        elif op.operation != list(op.operation.block.operations)[-1]:
            self.error(op, "must be the last op of its region")

    def _check_values(self, op, opdef: OpDef, kind: str, values: list, defs) -> None:
        fixed = [d for d in defs if not d.variadic]
        variadic = next((d for d in defs if d.variadic), None)
        n = len(values)
        if variadic is None and n != len(fixed):
            self.error(op, f"takes {len(fixed)} {kind}(s) ({_names(defs)}), got {n}")
            return
        if variadic is not None and n < len(fixed) + variadic.min:
            self.error(op, f"takes at least {len(fixed) + variadic.min} {kind}(s) ({_names(defs)}), got {n}")
            return
        # Map values onto definitions: fixed ones before the variadic group, the group, fixed ones after.
        slots: list = []
        split = defs.index(variadic) if variadic is not None else len(defs)
        slots += list(defs[:split])
        if variadic is not None:
            tail = list(defs[split + 1 :])
            slots += [variadic] * (n - len(slots) - len(tail)) + tail
        for index, (value, definition) in enumerate(zip(values, slots)):
            type_name = str(value.type)
            if type_name not in definition.types:
                self.error(
                    op,
                    f"{kind} #{index} ('{definition.name}') has type {type_name}; expected "
                    + " or ".join(definition.types),
                )

    def _check_attrs(self, op, opdef: OpDef) -> None:
        present = {}
        attributes = op.attributes
        for i in range(len(attributes)):
            named = attributes[i]
            present[named.name] = named.attr
        valid = [a.name for a in opdef.all_attrs]
        for name, value in present.items():
            definition = opdef.attr(name)
            if definition is None:
                self.error(
                    op,
                    f"has unknown attribute '{name}'" + _suggest(name, valid)
                    + (f" (valid attributes: {', '.join(valid)})" if valid else " (it takes no attributes)"),
                )
                continue
            problem = _attr_problem(definition, value)
            if problem:
                self.error(op, f"attribute '{name}' {problem}")
        for definition in opdef.all_attrs:
            if definition.required and definition.name not in present:
                self.error(
                    op,
                    f"is missing required attribute '{definition.name}'"
                    + (f" ({definition.doc})" if definition.doc else "")
                    + f"; give {ATTR_KINDS[definition.kind]}",
                )

    def _check_kernel(self, op) -> None:
        for name in ("kernel", "extend_kernel"):
            kernel = op.attributes[name] if name in op.attributes else None
            if isinstance(kernel, ir.FlatSymbolRefAttr) and kernel.value not in self.functions:
                known = ", ".join(sorted(self.functions)) or "none"
                self.error(op, f"names {name} '@{kernel.value}', which is no func.func in this module"
                           + _suggest(kernel.value, self.functions) + f" (functions: {known})")

    def _check_regions(self, op, opdef: OpDef) -> None:
        regions = list(op.regions)
        if len(regions) != len(opdef.regions):
            self.error(op, f"has {len(regions)} region(s); expected {len(opdef.regions)} ({', '.join(r.name for r in opdef.regions) or 'none'})")
            return
        for region, definition in zip(regions, opdef.regions):
            blocks = list(region.blocks)
            if len(blocks) != 1:
                self.error(op, f"region '{definition.name}' must have exactly one block, has {len(blocks)}")
                continue
            block = blocks[0]
            body = list(block.operations)
            if not body or body[-1].name != definition.terminator:
                self.error(op, f"region '{definition.name}' must end with {definition.terminator}")
            for inner in body:
                self.check_op(inner, parent=op)
            self._check_acyclic(block)

    # ------------------------------------------------------------------------------------------ per-op rules

    def _check_agent_graph(self, op) -> None:
        sla = op.attributes["sla_ms"] if "sla_ms" in op.attributes else None
        if sla is not None and _number(sla) == 0:
            self.error(op, "attribute 'sla_ms' must be > 0")

    def _check_agent_call(self, op) -> None:
        if "callee" not in op.attributes or not isinstance(op.attributes["callee"], ir.FlatSymbolRefAttr):
            return
        callee = op.attributes["callee"].value
        graph = self.graphs.get(callee)
        if graph is None:
            self.error(op, f"calls '@{callee}', which is no agent.graph in this module"
                       + _suggest(callee, self.graphs) + f" (agents: {', '.join(sorted(self.graphs)) or 'none'})")
            return
        params = [str(a.type) for a in graph.regions[0].blocks[0].arguments]
        args = [str(v.type) for v in op.operands]
        if params != args:
            self.error(op, f"passes ({', '.join(args)}) but '@{callee}' takes ({', '.join(params)})")
        returns = list(graph.regions[0].blocks[0].operations)
        if returns and returns[-1].name == "agent.return":
            produced = [str(v.type) for v in returns[-1].operands]
            expected = [str(v.type) for v in op.results]
            if produced != expected:
                self.error(op, f"expects results ({', '.join(expected)}) but '@{callee}' returns ({', '.join(produced)})")

    def _check_control_loop(self, op) -> None:
        carried = [str(v.type) for v in op.operands]
        results = [str(v.type) for v in op.results]
        if results != carried:
            self.error(op, f"results ({', '.join(results)}) must have the carried values' types ({', '.join(carried)})")
        if len(op.regions) == 1 and len(list(op.regions[0].blocks)) == 1:
            block = op.regions[0].blocks[0]
            args = [str(a.type) for a in block.arguments]
            if args != carried:
                self.error(op, f"body arguments ({', '.join(args)}) must match the carried values ({', '.join(carried)})")
            self._check_yield(op, block, carried, "body")
        attrs = op.attributes
        if "max_trips" in attrs and "expected_trips" in attrs:
            max_trips, expected = _number(attrs["max_trips"]), _number(attrs["expected_trips"])
            if max_trips is not None and expected is not None and expected > max_trips:
                self.error(op, f"expected_trips = {expected:g} exceeds max_trips = {max_trips:g}")

    def _check_control_branch(self, op) -> None:
        results = [str(v.type) for v in op.results]
        for region, name in zip(op.regions, ("then", "else")):
            if len(list(region.blocks)) == 1:
                block = region.blocks[0]
                if len(list(block.arguments)):
                    self.error(op, f"region '{name}' takes no block arguments")
                self._check_yield(op, block, results, name)

    def _check_yield(self, op, block, expected: list[str], region_name: str) -> None:
        body = list(block.operations)
        if body and body[-1].name == "control.yield":
            got = [str(v.type) for v in body[-1].operands]
            if got != expected:
                self.error(op, f"region '{region_name}' yields ({', '.join(got)}); expected ({', '.join(expected)})")

    # ------------------------------------------------------------------------------------------ cycles

    def _check_acyclic(self, block) -> None:
        """Report one dependency cycle among the ops of a block, if any (graph regions allow them in text)."""
        ops = list(block.operations)
        deps: dict = {op: set() for op in ops}
        for op in ops:
            for used in _values_used_by(op):
                owner = used.owner
                if isinstance(owner, ir.Block):
                    continue
                if owner.operation.block == block and owner != op:
                    deps[op].add(owner)
                elif owner == op:
                    deps[op].add(op)
        cycle = find_cycle(ops, deps)
        if cycle:
            path = " -> ".join(f"'{o.name}' ({location_of(o)})" for o in reversed(cycle))
            self.error(
                cycle[0],
                f"is part of a dependency cycle: {path}. A cycle must be written as a control.loop with "
                "max_trips and expected_trips, which bounds it",
            )

    def check_calls(self) -> None:
        """Recursion through agent.call (a graph reaching itself) would run forever: report the first cycle."""
        calls: dict = {name: [] for name in self.graphs}
        for name, graph in self.graphs.items():
            def visit(op, name=name):
                op = op.operation
                if op.name == "agent.call" and "callee" in op.attributes:
                    callee = op.attributes["callee"]
                    if isinstance(callee, ir.FlatSymbolRefAttr) and callee.value in self.graphs:
                        calls[name].append(callee.value)
                return ir.WalkResult.ADVANCE

            graph.walk(visit)
        cycle = find_cycle(list(calls), calls)
        if cycle:
            path = " -> ".join(f"@{name}" for name in reversed(cycle))
            self.error(self.graphs[cycle[0]], f"calls itself through agent.call ({path}); recursion has no bound "
                       "and would never end: write repetition as a control.loop with max_trips")


def _values_used_by(op):
    yield from op.operands
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                yield from _values_used_by(inner)


def _names(defs) -> str:
    return ", ".join(d.name + ("..." if d.variadic else "") for d in defs) or "none"


def _number(attr) -> float | None:
    if isinstance(attr, ir.BoolAttr):
        return None
    if isinstance(attr, ir.IntegerAttr):
        return float(attr.value)
    if isinstance(attr, ir.FloatAttr):
        return attr.value
    return None


def _attr_problem(definition: Attr, value) -> str | None:
    """Why `value` is not valid for `definition`, or None."""
    kind = definition.kind
    expected = f"must be {ATTR_KINDS[kind]}"
    if kind in ("string", "dtype", "enum"):
        if not isinstance(value, ir.StringAttr):
            return f"{expected}, got {value}"
        if kind == "dtype" and value.value not in DTYPES:
            return f"is \"{value.value}\"; valid dtypes: {', '.join(DTYPES)}"
        if kind == "enum" and value.value not in definition.choices:
            return f"is \"{value.value}\"; valid values: {', '.join(definition.choices)}"
        if definition.name in MODEL_ATTRS and (not MODEL_ID.fullmatch(value.value) or ".." in value.value):
            return (f"is \"{value.value}\"; a model id is letters, digits, '.', '_' and '-' (no '/', no '..'), "
                    "at most 128 characters")
        return None
    if kind == "bool":
        return None if isinstance(value, ir.BoolAttr) else f"{expected}, got {value}"
    if kind == "symbol":
        return None if isinstance(value, ir.FlatSymbolRefAttr) else f"{expected}, got {value}"
    if kind == "int":
        if isinstance(value, ir.BoolAttr) or not isinstance(value, ir.IntegerAttr):
            return f"{expected}, got {value}"
        return _range_problem(definition, float(value.value))
    if kind == "float":
        number = _number(value)
        return f"{expected}, got {value}" if number is None else _range_problem(definition, number)
    if kind == "tokens":
        if isinstance(value, ir.IntegerAttr) and not isinstance(value, ir.BoolAttr):
            return None if value.value >= 0 else f"is {value.value}; a token count must be >= 0"
        if isinstance(value, ir.DictAttr):
            fields = {value[i].name: value[i].attr for i in range(len(value))}
            mean = _number(fields["mean"]) if "mean" in fields else None
            if mean is None or not (0 <= mean < math.inf):
                return f"{expected} (a distribution needs a numeric 'mean' >= 0)"
            for key, item in fields.items():
                if key == "dist":
                    if not isinstance(item, ir.StringAttr) or item.value not in TOKEN_DISTRIBUTIONS:
                        return f"field 'dist' must be one of {', '.join(TOKEN_DISTRIBUTIONS)}"
                elif key in ("mean", "std", "min", "max"):
                    if _number(item) is None or not math.isfinite(_number(item)):
                        return f"field '{key}' must be a finite number"
                else:
                    return f"has unknown field '{key}'; valid: mean, std, min, max, dist"
            return None
        return f"{expected}, got {value}"
    if kind == "placement":
        if not isinstance(value, ir.DictAttr):
            return f"{expected}, got {value}"
        fields = {value[i].name: value[i].attr for i in range(len(value))}
        for key in ("device", "backend"):
            if key not in fields:
                return f"is missing field '{key}' ({ATTR_KINDS[kind]})"
        for key, item in fields.items():
            field_kind = _PLACEMENT_FIELDS.get(key)
            if field_kind is None:
                return f"has unknown field '{key}'; valid: {', '.join(_PLACEMENT_FIELDS)}"
            if field_kind == "string" and not isinstance(item, ir.StringAttr):
                return f"field '{key}' must be a string"
            if field_kind == "int" and (not isinstance(item, ir.IntegerAttr) or isinstance(item, ir.BoolAttr) or item.value < 1):
                return f"field '{key}' must be an integer >= 1"
            if field_kind == "index" and (not isinstance(item, ir.IntegerAttr) or isinstance(item, ir.BoolAttr) or item.value < 0):
                return f"field '{key}' must be an integer >= 0"
        return None
    raise AssertionError(f"op table uses unknown attribute kind {kind!r}")


def _range_problem(definition: Attr, number: float) -> str | None:
    if not math.isfinite(number):
        return f"is {number}; it must be a finite number"
    if definition.min is not None and number < definition.min:
        return f"is {number:g}; it must be >= {definition.min:g}"
    if definition.max is not None and number > definition.max:
        return f"is {number:g}; it must be <= {definition.max:g}"
    return None
