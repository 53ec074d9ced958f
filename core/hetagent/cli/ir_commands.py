"""`hetagent ir verify FILE` and `hetagent ir decompose FILE`."""

from __future__ import annotations

import sys
from pathlib import Path

from hetagent.cli.output import add_json_flag, console, print_json


def register(commands) -> None:
    ir_parser = commands.add_parser("ir", help="work with agent modules (MLIR)")
    sub = ir_parser.add_subparsers(dest="ir_command", metavar="ACTION", required=True)

    p = sub.add_parser("verify", help="check an agent module against the dialect; exit 2 with every problem")
    p.add_argument("file", type=Path, help="an agent: .mlir/.mlirbc, path/file.py:NAME or package.module:NAME")
    add_json_flag(p)
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("decompose", help="split high-level ops into granular operators and print the result")
    p.add_argument("file", type=Path, help="an agent: .mlir/.mlirbc, path/file.py:NAME or package.module:NAME")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout (.mlirbc: bytecode)")
    p.add_argument("--debug-info", action="store_true", help="keep source locations in the printed IR")
    p.set_defaults(handler=cmd_decompose)


def _summary(module) -> dict:
    counts: dict[str, int] = {}
    graphs = []

    def visit(op):
        name = op.operation.name
        if name != "builtin.module":
            counts[name] = counts.get(name, 0) + 1
        if name == "agent.graph":
            graphs.append(op.operation.attributes["sym_name"].value)
        from iree.compiler import ir

        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return {"graphs": graphs, "ops": sum(counts.values()), "op_counts": dict(sorted(counts.items()))}


def cmd_verify(args) -> int:
    from hetagent.agent import load_agent
    from hetagent.ir import verify

    module = verify(load_agent(args.file), what=str(args.file))
    summary = _summary(module)
    if args.json:
        print_json({"file": str(args.file), "ok": True, **summary})
    else:
        console.print(
            f"[green]ok[/] {args.file}: {len(summary['graphs'])} agent graph(s) "
            f"({', '.join(summary['graphs'])}), {summary['ops']} ops",
            highlight=False,
        )
    return 0


def cmd_decompose(args) -> int:
    from hetagent.agent import load_agent
    from hetagent.ir import decompose, save, to_text

    module = decompose(load_agent(args.file))
    if args.output:
        save(module, args.output)
        console.print(f"wrote {args.output}", highlight=False)
    else:
        sys.stdout.write(to_text(module, debug_info=args.debug_info))
    return 0
