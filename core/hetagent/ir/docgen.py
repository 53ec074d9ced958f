"""Render `spec/dialect.md` from the op table, so the spec and the verifier can never disagree.

    python -m hetagent.ir.docgen > spec/dialect.md     (a test fails when the file is stale)
"""

from __future__ import annotations

from hetagent.ir import guard
from hetagent.ir.optable import AGENT_TYPES, ANY, ATTR_KINDS, COMMON_ATTRS, OPS, OpDef

_LEVELS = (
    ("high", "High-level ops", "What an author writes or an importer emits."),
    ("granular", "Granular ops", "What `decompose` produces and the planner places; `xfer.*` appear at partition cuts."),
    ("structural", "Structure and control", "Graphs, calls, bounded control flow and terminators."),
)

_PREAMBLE = """\
# The agent dialect

<!-- Generated from core/hetagent/ir/optable.py by `python -m hetagent.ir.docgen`; do not edit by hand. -->

An agent is an MLIR module holding one or more `agent.graph` ops. Agent ops belong to the dialects
`{dialects}`; IREE 3.13 ships no IRDL, so they are **unregistered ops written in generic form**
(`%r = "llm.call"(%q) {{model = "llama-3-8b"}} : (!agent.text) -> !agent.text`) and their values have opaque
`!agent.*` types. The op table in `core/hetagent/ir/optable.py` is the single definition: it drives the Python
builder, the verifier, the `decompose` pass and this page, and it is shaped like IRDL (operands and results
with type constraints, attributes, regions) so it maps one to one onto `irdl.operation` once IRDL ships.

## Rules the verifier enforces

- Every op inside an `agent.graph` is an op of this page; compute kernels are `func.func`s at module level
  (tensors, linalg or torch dialect), referenced from ops by a `kernel = @symbol` attribute.
- Operand and result counts and types, attribute names, kinds and ranges, region counts and terminators
  are as listed below. Unknown ops and attributes are errors (with a suggestion when one is close).
- A graph body is an MLIR *graph region*: textual order is free, but dependencies must be **acyclic**. A
  cycle is written as a `control.loop`, which carries values between trips and is bounded by `max_trips`
  (`expected_trips` feeds the planner). Any other cycle is an error that lists the ops on it.
- `agent.call` must name an `agent.graph` of the module, with matching argument and result types; a graph
  that reaches itself through calls (recursion) is an error that lists the graphs on the cycle.
- A `kernel = @symbol` attribute must name a `func.func` of the module.
- Every number attribute is finite (no NaN or infinity) and in its range.
- `model` and `embed_model` are model ids: letters, digits, `.`, `_` and `-` (no `/`, no `..`), at most 128
  characters (they name directories and cache files).
- Text and bytecode (`.mlirbc`) round-trip exactly; messages carry `file:line:col` of the offending op.

## Limits on agent files

Agent files are untrusted input and MLIR's parsers are not hardened against it, so `hetagent.ir.guard` stands
between them (`load` and `parse` go through it):

- a file holds at most {max_bytes:,} bytes (its text form, for bytecode);
- text is UTF-8, and every string literal (op names, `sym_name`, `name`...) spells valid UTF-8 after its
  `\\XX` escapes;
- a location alias (`#loc3 = loc(...)`) is used only as a location, never as an attribute's value;
- brackets (`{{ ( [ <`: regions, dictionaries, arrays, types) nest at most {max_nesting} deep — about
  {max_regions} nested regions;
- bytecode is read in a child process with at most {bytecode_mib} MiB of extra memory and {bytecode_s:g} s; its
  text form is then checked and parsed like any text. A reader that crashes or runs out of either is reported
  as a corrupt or hostile file, and nothing it did reaches the process that loads the file.

Each limit exceeded is an error naming the file and (for text) the line and column.

## Types

| type | meaning |
|---|---|
{types}

## Attribute kinds

| kind | written as |
|---|---|
{kinds}

## Attributes every compute op accepts

{common}

Attributes are the **workload descriptor** of an op: model id, dtype, expected tokens (a count or a
distribution), batch hints, bytes in/out, tool latency; planning adds `placement`.

## Decomposition

| high-level op | becomes |
|---|---|
{decomp}

Granular ops inherit the attributes of their source op that they accept; a `name` label `x` becomes
`x.prefill`, `x.kv`, `x.decode` (and so on). The result is verified with high-level ops forbidden.
"""


def _attr_rows(attrs) -> list[str]:
    rows = ["| attribute | kind | required | meaning |", "|---|---|---|---|"]
    for a in attrs:
        bounds = []
        if a.min is not None:
            bounds.append(f">= {a.min:g}")
        if a.max is not None:
            bounds.append(f"<= {a.max:g}")
        if a.choices:
            bounds.append("one of " + ", ".join(f"`{c}`" for c in a.choices))
        extra = f" ({'; '.join(bounds)})" if bounds else ""
        rows.append(f"| `{a.name}` | {a.kind} | {'yes' if a.required else 'no'} | {a.doc}{extra} |")
    return rows


def _values(values, what: str) -> str:
    if not values:
        return f"*{what}*: none"
    parts = []
    for v in values:
        arity = f" (variadic, at least {v.min})" if v.variadic and v.min else " (variadic)" if v.variadic else ""
        doc = f" — {v.doc}" if v.doc else ""
        types = "any `!agent.*` type" if v.types == ANY else " or ".join(f"`{t}`" for t in v.types)
        parts.append(f"`{v.name}`: {types}{arity}{doc}")
    return f"*{what}*: " + "; ".join(parts)


def render_op(op: OpDef) -> str:
    lines = [f"### `{op.name}`", "", op.summary + (" " + op.description if op.description else ""), ""]
    lines.append("- " + _values(op.operands, "operands"))
    lines.append("- " + _values(op.results, "results"))
    if op.regions:
        lines.append(
            "- *regions*: "
            + "; ".join(f"`{r.name}` ends with `{r.terminator}`" + (f" ({r.doc})" if r.doc else "") for r in op.regions)
        )
    if op.terminator:
        lines.append("- *terminator*: must be the last op of its region")
    if op.decomposes_to:
        lines.append("- *decomposes to*: " + ", ".join(f"`{n}`" for n in op.decomposes_to))
    if op.attrs:
        lines += ["", *_attr_rows(op.attrs)]
    elif not op.terminator:
        lines += ["", "No op-specific attributes."]
    if op.level != "structural" and not op.terminator:
        lines += ["", "Also accepts the common attributes."]
    lines += ["", "```mlir", op.example, "```", ""]
    return "\n".join(lines)


def render() -> str:
    dialects = sorted({op.dialect for op in OPS.values()})
    text = _PREAMBLE.format(
        dialects="`, `".join(dialects),
        max_bytes=guard.MAX_BYTES, max_nesting=guard.MAX_NESTING, max_regions=guard.MAX_NESTING // 2,
        bytecode_mib=guard.BYTECODE_MEMORY >> 20, bytecode_s=guard.BYTECODE_SECONDS,
        types="\n".join(f"| `{t}` | {doc} |" for t, doc in AGENT_TYPES.items()),
        kinds="\n".join(f"| {k} | {doc} |" for k, doc in ATTR_KINDS.items()),
        common="\n".join(_attr_rows(COMMON_ATTRS)),
        decomp="\n".join(
            f"| `{op.name}` | {' + '.join(f'`{n}`' for n in op.decomposes_to)} |" for op in OPS.values() if op.decomposes_to
        ),
    )
    sections = [text]
    for level, title, blurb in _LEVELS:
        sections.append(f"## {title}\n\n{blurb}\n")
        sections += [render_op(op) for op in OPS.values() if op.level == level]
    return "\n".join(sections).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
