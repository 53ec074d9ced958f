"""Model functions: the reference decoder's functions at static shapes, the unit the compiler builds and every
backend runs (`spec/compiler.md`).

`ModelFunction` names one (model, function, dtype, shapes); the compiler exports it from torch into a
func.func that carries it as the `hetagent.function` attribute, so any backend can tell which function a kernel
module is (`kernel_function`) and, if its runtime is not IREE, trace the same function again with
`export_program` (hetagent-gaudi saves it as a torch graph for the HPU).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from iree.compiler import ir

from hetagent.errors import HetagentError, UnsupportedError
from hetagent.models.card import ModelCard
from hetagent.models.catalog import card
from hetagent.models.weight_names import weight_shapes

FUNCTION_ATTR = "hetagent.function"
# IREE parameters: weight i of a kernel's signature is key "i" of this scope (`weights_as_parameters`)
PARAMETER_SCOPE = "weights"


@dataclass(frozen=True)
class ModelFunction:
    """One exported function of a reference model at static shapes: the unit the compiler builds."""

    model: str
    function: str  # prefill | decode | embed | extend (a prefill resuming over a cached prefix)
    dtype: str
    batch: int
    prompt: int = 0  # prompt capacity T (prefill, embed), chunk C (extend)
    capacity: int = 0  # KV-cache capacity S (prefill, decode)

    @property
    def symbol(self) -> str:
        """The func.func name: model, function and shapes, e.g. `tiny_llama_decode_fp32_b1_s320`."""
        shapes = f"b{self.batch}" + (f"_t{self.prompt}" if self.prompt else "") + (f"_s{self.capacity}" if self.capacity else "")
        return re.sub(r"[^A-Za-z0-9_]", "_", f"{self.model}_{self.function}_{self.dtype}_{shapes}")

    def as_attribute(self, context: ir.Context) -> ir.DictAttr:
        """The `hetagent.function` attribute on the exported func.func: how to rebuild it from source."""
        with context:
            return ir.DictAttr.get({
                key: ir.StringAttr.get(value) if isinstance(value, str) else ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)
                for key, value in asdict(self).items()
            })

    @classmethod
    def from_attribute(cls, attr: ir.DictAttr) -> "ModelFunction":
        fields = {attr[i].name: attr[i].attr for i in range(len(attr))}
        return cls(**{k: v.value for k, v in fields.items()})

    def signature(self, model: ModelCard) -> dict:
        """Inputs and outputs (name, shape, dtype) in call order; the weights follow the inputs (see spec)."""
        kv = ["kv", [model.num_layers, 2, self.batch, model.num_kv_heads, self.capacity, model.head_size], self.dtype]
        tokens = ["tokens", [self.batch, self.prompt], "i64"]
        lengths = ["lengths", [self.batch], "i64"]
        logits = ["logits", [self.batch, model.vocab_size], self.dtype]
        inputs, outputs = {
            "prefill": ([tokens, lengths], [logits, kv]),
            "decode": ([["token", [self.batch], "i64"], ["positions", [self.batch], "i64"], kv], [logits, kv]),
            "embed": ([tokens, lengths], [["embedding", [self.batch, model.hidden_size], self.dtype]]),
            "extend": ([tokens, lengths, ["starts", [self.batch], "i64"], kv], [logits, kv]),
        }[self.function]
        return {"inputs": inputs, "outputs": outputs}


def _model_functions(module: ir.Module) -> list[ir.Operation]:
    """The module's func.func ops that carry a model function (`FUNCTION_ATTR`)."""
    from hetagent.ir.module import functions

    return [op for op in functions(module).values() if FUNCTION_ATTR in op.attributes]


def kernel_function(module: ir.Module) -> ModelFunction:
    """The one model function a clean kernel module holds; a module with none or several is declined."""
    from hetagent.ir.module import functions

    kernels = _model_functions(module)
    if len(kernels) != 1:
        names = ", ".join(functions(module)) or "none"
        raise UnsupportedError(  # a declined kernel, not a broken one
            f"expected one reference-decoder function (a func.func carrying {FUNCTION_ATTR}); this kernel module "
            f"has {len(kernels)} of them (functions: {names})"
        )
    return ModelFunction.from_attribute(kernels[0].attributes[FUNCTION_ATTR])


def reference_function(model: ModelCard, name: str):
    """The reference implementation of model function `name` (prefill, decode, embed) for `model`'s
    architecture: the decoder's (`hetagent.models.reference`) or the BERT encoder's (`hetagent.models.encoder`)."""
    from hetagent.models import encoder, reference
    from hetagent.models.weight_names import is_bert, reference_functions

    if name not in reference_functions(model):
        raise HetagentError(f"model {model.name!r} has no {name} function; it has {', '.join(reference_functions(model))}")
    return getattr(encoder if is_bert(model) else reference, name)


def export_program(fn: ModelFunction):
    """The `torch.export.ExportedProgram` of `fn`: arguments are its inputs, then the weights in
    `reference.weight_shapes` order; traced on the meta device."""
    from hetagent.models import reference# raises the "install hetagent[torch]" error when torch is missing

    import torch

    model = card(fn.model)
    dtype = reference.torch_dtype(model, fn.dtype)
    shapes = reference.weight_shapes(model)
    names = list(shapes)
    inputs = [
        (shape, torch.int64 if kind == "i64" else dtype)
        for _, shape, kind in fn.signature(model)["inputs"]
    ]
    body = reference_function(model, fn.function)

    class Function(torch.nn.Module):
        def forward(self, *args):
            values, weights = args[: len(inputs)], dict(zip(names, args[len(inputs) :]))
            if fn.function == "prefill":
                return body(model, weights, *values, fn.capacity)
            result = body(model, weights, *values)
            return result if isinstance(result, tuple) else (result,)

    with torch.device("meta"):  # every tensor the trace creates (aranges, masks) is meta too
        args = [torch.empty(shape, dtype=kind) for shape, kind in inputs]
        args += [torch.empty(shape, dtype=dtype) for shape in shapes.values()]
        return torch.export.export(Function(), tuple(args))


_VTENSOR = re.compile(r"!torch\.vtensor<\[([0-9,]*)\],(\w+)>")  # a torch-dialect value tensor type: shape, dtype


def _builtin_tensor(vtensor: ir.Type) -> str:
    """`!torch.vtensor<[32000,768],f32>` -> `tensor<32000x768xf32>`."""
    shape, dtype = _VTENSOR.fullmatch(str(vtensor)).groups()
    return f"tensor<{shape.replace(',', 'x')}x{dtype}>"


def weights_as_parameters(module: ir.Module) -> ir.Module:
    """A kernel module (torch dialect) whose model function's weights are IREE parameter globals rather than
    arguments: the function takes only its inputs and loads weight i from `#stream.parameter.named<"weights"::"i">`,
    which the runtime binds when it loads the artifact (`hetagent.backend.iree`). What depends on a weight only
    (data tiling's packing of it) is then hoisted into the module's initializer and runs once, at load, instead of
    on every call. A module without a model function (a hand-written kernel) is returned as it is."""
    kernels = _model_functions(module)
    if not kernels:
        return module
    fn = kernel_function(module)
    (func,) = kernels
    signature = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    types, results = [str(t) for t in signature.inputs], [str(t) for t in signature.results]
    inputs = len(types) - len(weight_shapes(card(fn.model)))  # the weights come last (an in-place decode has one more input)
    weights = [_builtin_tensor(t) for t in signature.inputs[inputs:]]
    with module.context:
        func.attributes["sym_name"] = ir.StringAttr.get(f"{fn.symbol}_with_weights")
        func.attributes["sym_visibility"] = ir.StringAttr.get("private")  # IREE inlines it into the entry point
    lines = [f'util.global private @{fn.symbol}_w{i} = #stream.parameter.named<"{PARAMETER_SCOPE}"::"{i}"> : {t}'
             for i, t in enumerate(weights)]
    arguments = ", ".join(f"%a{i}: {t}" for i, t in enumerate(types[:inputs]))
    lines.append(f"func.func @{fn.symbol}({arguments}) -> ({', '.join(results)}) {{")
    operands = [f"%a{i}" for i in range(inputs)]
    for i, tensor in enumerate(weights):
        lines.append(f"  %g{i} = util.global.load @{fn.symbol}_w{i} : {tensor}")
        lines.append(f"  %t{i} = torch_c.from_builtin_tensor %g{i} : {tensor} -> {types[inputs + i]}")
        operands.append(f"%t{i}")
    lines.append(f"  %r:{len(results)} = func.call @{fn.symbol}_with_weights({', '.join(operands)}) : "
                 f"({', '.join(types)}) -> ({', '.join(results)})")
    lines.append(f"  return {', '.join(f'%r#{i}' for i in range(len(results)))} : {', '.join(results)}\n}}")
    return _with_entry(module, func, lines, fn.symbol)


def _with_entry(module: ir.Module, kernel: ir.Operation, lines: list[str], symbol: str) -> ir.Module:
    """`module` with the ops in `lines` (a new entry point @symbol calling `kernel`, renamed) put before its own;
    the entry takes over the kernel's attributes (its `hetagent.function`, its reflection)."""
    from hetagent.ir.module import functions

    text = "\n".join(["module {", *lines, *(str(op) for op in module.body.operations), "}"])
    with module.context:
        wrapped = ir.Module.parse(text)
        found = functions(wrapped)
        entry, kernel = found[symbol], found[kernel.attributes["sym_name"].value]
        for attribute in (FUNCTION_ATTR, "iree.reflection"):
            if attribute in kernel.attributes:
                entry.attributes[attribute] = kernel.attributes[attribute]
                del kernel.attributes[attribute]
    return wrapped


# in a decode entry's reflection: the index of the input it writes in place, passed again after it (`decode_in_place`)
IN_PLACE_REFLECTION = "hetagent.in_place"


def decode_in_place(module: ir.Module) -> ir.Module:
    """A decode kernel module whose entry writes the step's rows into the KV cache it is given, rather than
    returning a new cache: IREE otherwise copies the whole cache on every step (14 MB for bench-llama, as long
    as the rest of a batch-1 step's attention).

    The entry becomes `(token, positions, kv, store, [weights]) -> logits`: `store` is a mutable tensor (torch
    dialect `!torch.tensor`) overwritten with the reference function's new cache, which writes the step's rows
    into `store` with one scatter and reads only `kv` elsewhere (`hetagent.models.reference.decode`). The runtime
    passes the same buffer as both (`hetagent.backend.iree`); no read of `kv` touches a row the scatter writes,
    so the scatter may run in place while other dispatches read. The entry's reflection says which input is
    written (`IN_PLACE_REFLECTION`). Any other module is returned as it is; run before `weights_as_parameters`
    and, after `torch-to-iree`, `drop_tensor_aliases`."""
    from hetagent.ir.module import functions

    kernels = _model_functions(module)
    fn = kernel_function(module) if kernels else None
    if fn is None or fn.function != "decode":
        return module
    (func,) = kernels
    names = [name for name, _, _ in fn.signature(card(fn.model))["inputs"]]
    kv = names.index("kv")
    block = func.regions[0].blocks[0]
    scatters = [op for op in block.operations if op.operation.name == "torch.aten.index_put"
                and _defined_from(op.operands[0], block.arguments[kv])]
    if len(scatters) != 1:
        raise HetagentError(f"@{func.attributes['sym_name'].value}: expected one scatter into the KV cache (a "
                            f"torch.aten.index_put on a reshape of argument {kv}), found {len(scatters)}")
    signature = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    types, results = [str(t) for t in signature.inputs], [str(t) for t in signature.results]
    with module.context, ir.Location.unknown():
        store = block.add_argument(signature.inputs[kv], ir.Location.unknown())
        scatters[0].operands[0].owner.operands[0] = store  # the reshape feeding the scatter now reads `store`
        func.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(
            [*signature.inputs, signature.inputs[kv]], list(signature.results)))
        symbol = func.attributes["sym_name"].value
        func.attributes["sym_name"] = ir.StringAttr.get(f"{symbol}_pure")
        func.attributes["sym_visibility"] = ir.StringAttr.get("private")  # IREE inlines it into the entry
    mutable = types[kv].replace("!torch.vtensor", "!torch.tensor")
    arguments = [f"%a{i}: {t}" for i, t in enumerate(types)]
    arguments.insert(kv + 1, f"%store: {mutable}")
    lines = [
        f"func.func @{symbol}({', '.join(arguments)}) -> {results[0]} {{",
        f"  %s = torch.copy.to_vtensor %store : {types[kv]}",
        f"  %r:2 = func.call @{symbol}_pure({', '.join(f'%a{i}' for i in range(len(types)))}, %s) : "
        f"({', '.join(types + [types[kv]])}) -> ({', '.join(results)})",
        f"  torch.overwrite.tensor.contents %r#1 overwrites %store : {types[kv]}, {mutable}",
        f"  return %r#0 : {results[0]}",
        "}",
    ]
    entry = _with_entry(module, func, lines, symbol)
    with module.context:
        functions(entry)[symbol].attributes["iree.reflection"] = ir.DictAttr.get(
            {IN_PLACE_REFLECTION: ir.StringAttr.get(str(kv))})
    return entry


def _defined_from(value: ir.Value, argument: ir.Value) -> bool:
    """Whether `value` is `argument` seen through one reshape or view."""
    owner = value.owner
    return (not isinstance(owner, ir.Block) and owner.operation.name in ("torch.aten.reshape", "torch.aten.view")
            and owner.operands[0] == argument)


def _vtensor(value: ir.Value) -> tuple[list[int], str] | None:
    """A value's `!torch.vtensor<[1,1,768],f32>` type as ([1, 1, 768], "f32"); None for any other type."""
    found = _VTENSOR.fullmatch(str(value.type))
    return ([int(d) for d in found[1].split(",") if d], found[2]) if found else None


def _projections(block: ir.Block) -> list[list[tuple[ir.Operation, ir.Operation]]]:
    """The block's `x @ W.T` matmuls (`torch.aten.matmul` of x by `torch.aten.numpy_T` of a block argument W
    [N, K] of x's width K and type) as (matmul, transpose) pairs, grouped by x in block order; groups of two or
    more only."""
    groups: list[tuple[ir.Value, list]] = []
    arguments = list(block.arguments)
    for op in block.operations:
        rhs = op.operands[1].owner if op.operation.name == "torch.aten.matmul" else None
        if rhs is None or isinstance(rhs, ir.Block) or rhs.operation.name != "torch.aten.numpy_T":
            continue
        weight, x = rhs.operands[0], op.operands[0]
        w, v = _vtensor(weight), _vtensor(x)
        if weight not in arguments or not w or not v or len(w[0]) != 2 or (w[0][1], w[1]) != (v[0][-1], v[1]):
            continue
        group = next((g for value, g in groups if value == x), None)
        if group is None:
            groups.append((x, group := []))
        group.append((op.operation, rhs.operation))
    return [g for _, g in groups if len(g) > 1]


def merge_projections(module: ir.Module) -> ir.Module:
    """A kernel module (torch dialect, weights as parameter globals: run after `weights_as_parameters`) in which
    the projections of one input by several weights — q, k and v of a layer; its MLP's gate and up — are one
    matmul by the weights' concatenation, its result sliced back apart. IREE computes the concatenation (and its
    data-tiled packing) once, in the module's initializer, since it depends on globals only; each call then runs
    one dispatch where it ran two or three (and IREE left a ~35 µs hole between the gate and up dispatches). A
    batch-1 decode step of small-llama on 2 threads, interleaved runs of the kernel alone: 18.5-19.1 -> 17.1-18.1
    ms; prefill of 512 tokens 517-523 -> 446-453 ms. Each output is the same dot product of x and one weight row
    as before. With weights as arguments the concatenation would run on every call: a model function's module
    without parameter globals is an error. A module without a model function (a hand-written kernel) is returned
    as it is."""
    from hetagent.ir.module import functions

    if not _model_functions(module):
        return module
    if not any(op.operation.name == "util.global" for op in module.body.operations):
        raise HetagentError("merge-projections: the module has no parameter globals; run it after "
                            "weights-as-parameters (with weights as arguments it would concatenate them on every call)")
    with module.context, ir.Location.unknown():
        for func in functions(module).values():
            if not func.regions[0].blocks:
                continue
            for group in _projections(func.regions[0].blocks[0]):
                _merge(group)
    return module


def _merge(group: list[tuple[ir.Operation, ir.Operation]]) -> None:
    """Replace the matmuls of `group` (one input, weights [N_i, K]) by one over the weights' concatenation."""
    first, _ = group[0]
    x = first.operands[0]
    shape, dtype = _vtensor(x)
    weights = [transpose.operands[0] for _, transpose in group]
    rows = [_vtensor(w)[0][0] for w in weights]
    total = sum(rows)

    def vtensor(dims) -> ir.Type:
        return ir.Type.parse(f"!torch.vtensor<[{','.join(map(str, dims))}],{dtype}>")

    def const(value: int) -> ir.Value:
        return ir.Operation.create("torch.constant.int", results=[ir.Type.parse("!torch.int")], attributes={
            "value": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)}).result

    with ir.InsertionPoint(first):
        listed = ir.Operation.create("torch.prim.ListConstruct", results=[ir.Type.parse("!torch.list<vtensor>")],
                                     operands=weights).result
        cat = ir.Operation.create("torch.aten.cat", results=[vtensor([total, shape[-1]])],
                                  operands=[listed, const(0)]).result
        both = ir.Operation.create("torch.aten.numpy_T", results=[vtensor([shape[-1], total])], operands=[cat]).result
        product = ir.Operation.create("torch.aten.matmul", results=[vtensor([*shape[:-1], total])],
                                      operands=[x, both]).result
        start, last, one = 0, const(len(shape) - 1), const(1)
        for (matmul, _), n in zip(group, rows):
            part = ir.Operation.create("torch.aten.slice.Tensor", results=[vtensor([*shape[:-1], n])],
                                       operands=[product, last, const(start), const(start + n), one]).result
            matmul.result.replace_all_uses_with(part)
            start += n
    for matmul, transpose in group:
        matmul.erase()
        if not list(transpose.result.uses):
            transpose.erase()


def drop_tensor_aliases(module: ir.Module) -> ir.Module:
    """An in-place decode module (`decode_in_place`) without its `hal.tensor.alias` ops (run after
    `torch-to-iree`): the scatter into the imported `store` already writes the store's buffer, while IREE (3.13),
    given the alias, computes the new cache into a transient and copies it over, the whole-cache copy the in-place
    entry is for. (`test_compiler` checks both: the cache written, and no cache-sized copy.) Any other module is
    returned as it is."""
    aliases, in_place = [], []

    def visit(op):
        if op.name == "hal.tensor.alias":
            aliases.append(op)
        elif "iree.reflection" in op.attributes and IN_PLACE_REFLECTION in ir.DictAttr(op.attributes["iree.reflection"]):
            in_place.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if not in_place:
        return module
    for op in aliases:
        op.results[0].replace_all_uses_with(op.operands[0])
        op.erase()
    return module
