"""`hetagent import langgraph AGENT -o agent.mlir`: an agent written with a framework, as an agent module."""

from __future__ import annotations

from pathlib import Path

from hetagent.cli.output import add_json_flag, console, print_json, print_table


def register(commands) -> None:
    p = commands.add_parser("import", help="import an agent written with a framework (LangGraph) into an agent module")
    sub = p.add_subparsers(dest="framework", metavar="FRAMEWORK", required=True)
    g = sub.add_parser("langgraph", help="a LangGraph StateGraph or compiled graph (needs hetagent[langgraph])",
                       description="Map a LangGraph graph to the agent IR and print how each node and edge was mapped "
                       "and what was assumed (spec/frontends.md). run, serve, plan and compile also take the graph "
                       "directly.")
    g.add_argument("graph", help="path/file.py:NAME or package.module:NAME naming the graph")
    g.add_argument("-o", "--output", type=Path, help="write the module here (.mlirbc: bytecode); default: stdout")
    add_json_flag(g)
    g.set_defaults(handler=cmd_import_langgraph)


def cmd_import_langgraph(args) -> int:
    import sys

    from hetagent.agent.langgraph import import_graph
    from hetagent.agent.source import graph_name, load_object
    from hetagent.ir import save, to_text, verify

    imported = import_graph(load_object(args.graph), name=graph_name(args.graph), origin=args.graph)
    verify(imported.module, what=args.graph)
    if args.output:
        save(imported.module, args.output)
    report = {"graph": args.graph, "agent": imported.name, "output": str(args.output) if args.output else None,
              "nodes": [{"node": m.node, "kind": m.kind, "how": m.how, "attrs": m.attrs} for m in imported.nodes],
              "edges": [{"edge": what, "became": became} for what, became in imported.edges], "assumed": imported.assumed}
    if args.json:
        print_json({**report, **({} if args.output else {"module": to_text(imported.module)})})
        return 0
    if not args.output:
        sys.stdout.write(to_text(imported.module))
        return 0
    print_table(f"{args.graph}: nodes", ["node", "became"], [(m.node, m.how) for m in imported.nodes])
    print_table("edges", ["edge", "became"], imported.edges)
    for assumption in imported.assumed:
        console.print(f"assumed {assumption} (set it in the node's metadata {{'hetagent': {{...}}}})", highlight=False,
                      soft_wrap=True)
    console.print(f"wrote {args.output}", highlight=False)
    return 0
