"""`hetagent plan` and `hetagent simulate`: the planner and its check by simulation from the command line."""

from __future__ import annotations

from hetagent.cli import limits
from hetagent.cli.output import add_json_flag, console, print_json, print_table


def register(commands) -> None:
    p = commands.add_parser("plan", help="place an agent's ops on a fleet at the lowest cost that meets its SLA")
    p.add_argument("problem", help="problem file, TOML or JSON (spec/plan-format.md; examples/problems/)")
    p.add_argument("--agent", metavar="AGENT", help="plan this agent instead of the problem's: .mlir, "
                   "path/file.py:NAME or package.module:NAME (an @agent function or a LangGraph graph)")
    p.add_argument("--out", metavar="PLAN", help="write the plan as JSON (for hetagent compile --plan / simulate / run)")
    p.add_argument("--ir-out", metavar="FILE", help="write the decomposed agent with `placement` attributes")
    p.add_argument("--pareto", action="store_true", help="also compute the cost–latency front")
    p.add_argument("--plot", metavar="PNG", help="with --pareto: plot the front (and the plan) to this image")
    p.add_argument("--simulate", metavar="TRACE", nargs="?", const="", default=None,
                   help="check the plan by simulation (the problem's trace, or this one) and re-plan with more "
                   "headroom until the SLA holds at its percentile")
    p.add_argument("--trace-seconds", type=limits.SECONDS, default=None, help="simulate only the trace's first seconds")
    p.add_argument("--no-baselines", action="store_true", help="skip the homogeneous and pair baselines")
    add_json_flag(p)
    p.set_defaults(handler=cmd_plan)

    p = commands.add_parser("simulate", help="replay a request trace through a plan: queueing, batching, transfers")
    p.add_argument("plan", help="plan JSON written by `hetagent plan --out`")
    p.add_argument("--trace", help="Azure-format CSV (default: the problem's trace, else Poisson arrivals at its rate)")
    p.add_argument("--seconds", type=limits.SECONDS, default=None, help="replay only the first seconds of the trace")
    add_json_flag(p)
    p.set_defaults(handler=cmd_simulate)


def _cost_model(args):
    from hetagent.cost import RooflineModel
    from hetagent.backend.registry import Registry, requested_backends

    return RooflineModel.from_registry(Registry.load(requested_backends(args.backends)))


def cmd_plan(args) -> int:
    from rich.progress import Progress

    from hetagent.planner.planner import make_plan
    from hetagent.planner.problem import load_problem

    problem = load_problem(args.problem)
    if args.agent:
        import dataclasses

        from hetagent.agent.source import check

        check(args.agent)
        problem = dataclasses.replace(problem, agent=args.agent)
    model = None if problem.profiled else _cost_model(args)
    with Progress(console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task(f"planning {problem.name}", total=None)

        def say(what: str) -> None:
            progress.update(task, description=f"planning {problem.name}: {what}")

        if args.simulate is not None:
            from hetagent.sim.feedback import plan_until_simulated_sla

            plan = plan_until_simulated_sla(problem, model, trace=args.simulate or None, seconds=args.trace_seconds,
                                            pareto=args.pareto, baselines=not args.no_baselines, progress=say)
        else:
            plan = make_plan(problem, model, pareto=args.pareto, baselines=not args.no_baselines, progress=say)
    if args.out:
        plan.save(args.out)
    if args.ir_out:
        _write_placed_ir(problem, plan, args.ir_out)
    if args.plot:
        from hetagent.planner.pareto_chart import write_pareto_chart

        write_pareto_chart(plan, args.plot)
    if args.json:
        print_json(plan.to_dict())
        return 0
    _print_plan(plan)
    written = [f"{what}: {path}" for what, path in (("plan", args.out), ("placed IR", args.ir_out), ("plot", args.plot)) if path]
    if written:
        console.print("; ".join(written), highlight=False)
    return 0


def cmd_simulate(args) -> int:
    import dataclasses
    import time

    from hetagent.errors import HetagentError
    from hetagent.plan import Plan
    from hetagent.planner.planner import build
    from hetagent.planner.problem import load_problem
    from hetagent.sim.simulate import requests_for, simulate_plan

    plan = Plan.load(args.plan).require_figures("hetagent simulate")
    if "source" not in plan.problem:
        raise HetagentError(f"{args.plan}: the plan does not name its problem file (problem.source): re-plan it")
    problem = load_problem(plan.problem["source"]).with_utilisation(plan.problem["max_utilisation"])
    if plan.latency.sla_s is not None:
        problem = dataclasses.replace(problem, e2e_s=plan.latency.sla_s)
    model = None if problem.profiled else _cost_model(args)
    requests, origin = requests_for(problem, args.trace, args.seconds)
    started = time.perf_counter()
    summary = simulate_plan(plan, problem, build(problem, model), requests).summary()
    summary["trace"], summary["seconds"] = origin, time.perf_counter() - started
    if args.json:
        print_json(summary)
        return 0
    _print_simulation(summary, plan)
    return 0


def _print_simulation(summary, plan) -> None:
    q = summary["percentile"]
    rows = [[what, *(_ms(summary[key].get(p)) for p in ("p50", "p90", "p99"))]
            for what, key in (("end-to-end", "e2e_s"), ("TTFT (each LLM step)", "ttft_s"), ("time between tokens", "tbt_s"))
            if summary[key]]
    print_table(f"simulated {summary['requests']} requests over {summary['duration_s']:.0f} s ({summary['trace']}) "
                f"in {summary['seconds']:.1f} s", ["ms", "p50", "p90", "p99"], rows)
    attainment = summary["sla_attainment"]
    print_table("SLA", ["", ""], [
        ["SLA", f"{summary['sla_s']:g} s at p{q:g}" if summary["sla_s"] else "-"],
        [f"end-to-end p{q:g}", f"{summary['e2e_at_percentile_s']:.3f} s"],
        ["requests within the SLA", f"{attainment:.2%}" if attainment is not None else "-"],
        ["planned end-to-end", f"{plan.latency.e2e_s:.3f} s"],
    ])
    print_table("utilisation per device class", ["device", "count", "busy"],
                [[name, plan.devices[name].count, f"{value:.0%}"] for name, value in summary["utilisation"].items()])


def _write_placed_ir(problem, plan, path) -> None:
    from hetagent.errors import HetagentError

    if problem.agent is None:
        raise HetagentError("--ir-out needs a problem with an agent (a profiled problem has no IR)")
    from hetagent.compiler.place import place
    from hetagent.agent import load_agent
    from hetagent.ir import decompose, save
    from hetagent.ir.passes import assign_ids
    from hetagent.backend.registry import Registry

    module = assign_ids(decompose(load_agent(problem.agent)))  # a plan names unlabelled ops by these ids
    # the planner's decision as it is, whether or not this node's backends can run it: compile and run check it
    place(module, plan, registry=Registry.load(), check=False)
    save(module, path)


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f}"


def _print_plan(plan) -> None:
    problem = plan.problem
    print_table(
        f"plan for {problem['name']} at {problem['rate_rps']:g} requests/s (utilisation cap {problem['max_utilisation']:g})",
        ["op", "kind", "device", "tp", "batch", "replicas", "runs/request", "latency ms", "TTFT ms", "TBT ms", "critical"],
        [[label, op.op, op.device, _placement(plan, label, "tp"), _placement(plan, label, "batch"),
          _placement(plan, label, "replicas"), op.executions_per_request, _ms(op.latency_s), _ms(op.ttft_s),
          _ms(op.tbt_s), "●" if op.critical else ""] for label, op in plan.ops.items()],
    )
    print_table(
        "devices to provision",
        ["device", "backend", "count", "limit", "$/hour each", "utilisation", "shared by its ops"],
        [[name, d.backend or "-", d.count, d.max_count, f"{d.usd_per_hour_each:.3f}", f"{d.utilisation:.0%}",
          "yes" if d.pooled else "no"] for name, d in plan.devices.items()],
    )
    cost, latency = plan.cost, plan.latency
    rows = [
        ["fleet $/hour", f"{cost.usd_per_hour:,.3f}"],
        ["$/request", f"{cost.usd_per_request:.6f}"],
        ["$/M tokens", f"{cost.usd_per_m_tokens:.4f}" if cost.usd_per_m_tokens else "-"],
        ["end-to-end (planned)", f"{latency.e2e_s:.3f} s" + (f" of {latency.sla_s:g} s at p{latency.percentile:g}" if latency.sla_s else "")],
    ]
    if latency.slack_s:
        rows.append(["over the SLA (soft)", f"{latency.slack_s:.3f} s, charged ${cost.slack_penalty_usd_per_hour:.2f}/h"])
    for name, baseline in plan.baselines.items():
        if baseline.feasible:
            rows.append([f"vs best {name} ({baseline.name})",
                         f"${baseline.usd_per_hour:,.3f}/h, {baseline.e2e_s:.3f} s: saves {baseline.savings:.1%}"])
        else:
            rows.append([f"vs best {name}", f"infeasible: {baseline.why}"])
    print_table("cost and latency", ["", ""], rows)
    print_table("critical path", ["step", "kind", "on", "ms"],
                [[s.op, s.kind, s.device, _ms(s.seconds)] for s in latency.critical_path])
    if plan.binding:
        print_table("binding constraints", ["constraint", "detail"], [[b.constraint, b.detail] for b in plan.binding])
    if plan.pareto:
        print_table("cost–latency front", ["end-to-end s", "$/hour", "$/request", "devices"],
                    [[f"{p['e2e_s']:.3f}", f"{p['usd_per_hour']:.3f}", f"{p['usd_per_request']:.6f}",
                      ", ".join(f"{n}×{c}" for n, c in p["devices"].items())] for p in plan.pareto])
    if plan.simulation:
        sim = plan.simulation
        print_table("simulated (feedback loop)", ["", ""],
                    [["utilisation cap", f"{sim['max_utilisation']:g} after {sim['rounds']} round(s)"],
                     ["planning target", f"{sim['planning_target_s']:.3f} s" if sim.get("planning_target_s") else "-"],
                     [f"simulated end-to-end p{latency.percentile:g}", f"{sim['e2e_at_percentile_s']:.3f} s"],
                     ["SLA", f"{sim['sla_s']:g} s" if sim.get("sla_s") else "-"],
                     ["SLA attainment", f"{sim['sla_attainment']:.1%}" if sim.get("sla_attainment") is not None else "-"],
                     ["SLA met", "yes" if sim["meets_sla"] else "no"]])


def _placement(plan, label, field):
    placement = plan.placements.get(label, plan.default)
    return getattr(placement, field)
