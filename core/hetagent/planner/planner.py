"""The planner: a problem in, the cheapest plan that meets its SLA out — with its baselines, what binds, and, when
nothing meets the SLA, why not (`spec/plan-format.md`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from hetagent.errors import HetagentError
from hetagent.hardware.tco import SECONDS_PER_HOUR, usd_per_million_tokens
from hetagent.planner.instance import Instance, Solution
from hetagent.planner.milp import Infeasible, solve
from hetagent.planner.options import AgentInstance, Dropped
from hetagent.plan import (Baseline, Binding, Cost, DeviceCount, Latency, OpPlan, PathStep, Placement, Plan)
from hetagent.planner.problem import Problem

SOLVER = "HiGHS (highspy)"


class NoPlan(HetagentError):
    """No plan meets the SLA; the message says which constraint binds, where, and the best achievable."""


def build(problem: Problem, model=None) -> AgentInstance:
    """The solver's instance for `problem` (a cost model is needed unless the problem is profiled)."""
    if problem.profiled:
        from hetagent.planner.profiled import build_profiled

        return build_profiled(problem)
    from hetagent.planner.graph import load_task_graph
    from hetagent.planner.options import build_instance

    return build_instance(problem, load_task_graph(problem.agent), model)


def make_plan(problem: Problem, model=None, *, baselines: bool = True, pareto: bool = False,
              progress: Callable[[str], None] | None = None) -> Plan:
    say = progress or (lambda _: None)
    say("building options")
    built = build(problem, model)
    say("solving")
    solution = _solve_or_explain(built, problem)
    plan = assemble(built, problem, solution)
    if baselines:
        say("baselines")
        plan.baselines = compare(built, problem, solution)
    plan.binding = bindings(built, problem, solution)
    if pareto:
        say("Pareto front")
        plan.pareto = pareto_front(dataclasses.replace(built.instance, sla_s=None), problem.rate_rps)
    return plan


# ---------------------------------------------------------------- solving and explaining


def _solve_or_explain(built: AgentInstance, problem: Problem) -> Solution:
    instance = built.instance
    if built.unplaceable:
        raise NoPlan("no plan: " + "; ".join(built.unplaceable.values()))
    for task in range(len(instance.tasks)):
        if not instance.by_task[task]:
            raise NoPlan(f"no plan: {_dropped_reason(built, task)}")
    try:
        return solve(instance)
    except Infeasible:
        raise NoPlan(explain_infeasible(built, problem)) from None


def _dropped_reason(built: AgentInstance, task: int) -> str:
    """Why every option of a task was left out: the constraint, and the best any class achieves."""
    label = built.instance.tasks[task]
    dropped = [d for d in built.dropped if d.task == task]
    latency = [d for d in dropped if d.constraint in ("ttft", "tbt", "task_sla")]
    if not latency:
        fits = min((d for d in dropped if d.constraint == "memory"), key=lambda d: d.value / d.limit)
        return (f"op {label!r} fits in memory on no class of the fleet at any TP degree searched (closest: "
                f"{fits.device} tp {fits.tp} needs {fits.value:.1f} GB of {fits.limit:.1f} GB usable); add a larger "
                "device or a higher TP degree")
    best = min(latency, key=lambda d: d.value)
    name = {"ttft": "TTFT", "tbt": "time between tokens", "task_sla": "per-task SLA"}[best.constraint]
    return (f"the {name} limit binds on op {label!r}: the best achievable with this fleet is "
            f"{best.value * 1000:.1f} ms on {best.device} (tp {best.tp}, batch {best.batch}), over the limit of "
            f"{best.limit * 1000:g} ms")


def explain_infeasible(built: AgentInstance, problem: Problem) -> str:
    instance = built.instance
    unlimited = {n: dataclasses.replace(c, max_count=None) for n, c in instance.classes.items()}
    free = dataclasses.replace(instance, classes=unlimited, sla_s=None)
    try:
        fastest = solve(free, minimise="latency")
    except Infeasible:
        return "no plan: no choice of options is feasible even without the SLA and the device-count limits"
    limited_free = dataclasses.replace(instance, sla_s=None)
    try:
        fastest_limited = solve(limited_free, minimise="latency")
    except Infeasible:
        counts = ", ".join(f"{n} ≤ {c.max_count}" for n, c in instance.classes.items() if c.max_count)
        return (f"no plan: the device-count limits ({counts}) bind — the fleet cannot hold one replica of every op "
                f"at the offered rate of {problem.rate_rps:g} requests/s even ignoring the SLA")
    path = critical_path(built, fastest_limited)
    longest = max((s for s in path if s.kind == "compute"), key=lambda s: s.seconds)
    if fastest.makespan_s < fastest_limited.makespan_s - 1e-9 and fastest.makespan_s <= (instance.sla_s or 0):
        binding = (f"the device-count limits bind: within them the best end-to-end latency is "
                   f"{fastest_limited.makespan_s:.3f} s; without them it would be {fastest.makespan_s:.3f} s")
    else:
        binding = (f"the end-to-end SLA binds: the best achievable with this fleet is {fastest_limited.makespan_s:.3f} s "
                   f"against a limit of {instance.sla_s:g} s")
    return (f"no plan meets the SLA: {binding}; the longest op on that critical path is {longest.op!r} "
            f"({longest.seconds * 1000:.1f} ms on {longest.device}), path: "
            + " → ".join(f"{s.op} {s.seconds * 1000:.0f} ms" for s in path))


# ---------------------------------------------------------------- the plan record


def assemble(built: AgentInstance, problem: Problem, solution: Solution) -> Plan:
    instance, graph = built.instance, built.graph
    placements, ops = {}, {}
    critical = {step.op for step in critical_path(built, solution)}
    pooled_load: dict[str, float] = {}
    for task, o in enumerate(solution.choice):
        option, spec = instance.options[o], graph.tasks[task]
        device_class = instance.classes[option.device]
        timing = option.detail
        if device_class.pooled:
            pooled_load[option.device] = pooled_load.get(option.device, 0.0) + option.demand * problem.max_utilisation
        # a pooled op's replicas are the workers its demand needs, sharing the class's devices with other ops
        replicas = max(1, math.ceil(option.demand - 1e-9)) if device_class.pooled else max(1, option.devices // option.tp)
        placement = Placement(option.device, device_class.backend, replicas, option.tp, option.batch)
        placements[spec.label] = placement  # an unlabelled op by its stable id, as the compiler names it
        ops[spec.label] = OpPlan(spec.op if spec.op != "task" else spec.label, option.device, spec.executions,
                                 timing.latency_s, solution.start_s[task], timing.busy_s, option.devices,
                                 timing.ttft_s, timing.tbt_s, spec.label in critical)
    for kv_label, (prefill, decode) in graph.kv_labels.items():  # a KV transfer runs where its decode runs
        decode_label = graph.tasks[decode].label
        if decode_label in placements:
            placements[kv_label] = placements[decode_label]
    default = _default_placement(built, solution)
    devices = {}
    for name, count in sorted(solution.counts.items()):
        device_class = instance.classes[name]
        if count == 0:
            continue
        busy = pooled_load.get(name) if device_class.pooled else sum(
            problem.rate_rps * graph.tasks[t].executions * instance.options[o].detail.busy_s
            for t, o in enumerate(solution.choice) if instance.options[o].device == name)
        devices[name] = DeviceCount(count, device_class.usd_per_hour, device_class.pooled, busy / count,
                                    device_class.backend, device_class.max_count)
    tokens = _tokens_per_request(built, solution)
    per_hour = solution.usd_per_hour
    cost = Cost(per_hour, per_hour / (problem.rate_rps * SECONDS_PER_HOUR),
                usd_per_million_tokens(per_hour, problem.rate_rps * tokens) if tokens else None, tokens or None,
                solution.penalty_usd_per_hour or None)
    latency = Latency(solution.makespan_s, tuple(critical_path(built, solution)), instance.sla_s, problem.percentile,
                      solution.slack_s or None)
    return Plan(placements, default, devices, ops, cost, latency, [], problem.summary(),
                solver={"name": SOLVER, "status": "optimal" if solution.optimal else "time limit: best found, not proved optimal",
                        "seconds": solution.seconds,
                        "variables": solution.variables, "constraints": solution.constraints,
                        "options": len(instance.options)},
                source=f"the plan for {problem.name}")


def _default_placement(built: AgentInstance, solution: Solution) -> Placement:
    """Where unlabelled ops run: the class the first unlabelled op was given (they are CPU-only, and all on it)."""
    instance = built.instance
    for task, spec in enumerate(built.graph.tasks):
        if not spec.labelled:
            device = instance.options[solution.choice[task]].device
            return Placement(device, instance.classes[device].backend)
    pooled = [n for n, c in instance.classes.items() if c.pooled] or list(instance.classes)
    cheapest = min(pooled, key=lambda n: instance.classes[n].usd_per_hour)
    return Placement(cheapest, instance.classes[cheapest].backend)


def _tokens_per_request(built: AgentInstance, solution: Solution) -> float:
    """LLM tokens one request makes the fleet process: every prefill's prompt and every decode's output."""
    total = 0.0
    for task, (spec, role) in enumerate(zip(built.graph.tasks, built.roles)):
        timing = built.instance.options[solution.choice[task]].detail
        if role == "prefill":
            total += spec.executions * timing.tokens_in
        elif role == "decode":
            total += spec.executions * timing.tokens_out
    return total


def critical_path(built: AgentInstance, solution: Solution) -> list[PathStep]:
    """The ops and transfers whose times add up to the makespan, from the first to the last."""
    instance = built.instance
    choice = solution.choice
    end = [solution.start_s[t] + instance.options[choice[t]].latency_s for t in range(len(choice))]
    if not end:
        return []
    task = max(range(len(end)), key=end.__getitem__)
    steps: list[PathStep] = []
    while True:
        option = instance.options[choice[task]]
        steps.append(PathStep(instance.tasks[task], "compute", option.latency_s, option.device))
        start = solution.start_s[task]
        if start <= 1e-12:
            break
        for edge in instance.edges:
            if edge.dst != task:
                continue
            transfer = edge.transfer_s.get((choice[edge.src], option.device), 0.0)
            if abs(end[edge.src] + transfer - start) <= 1e-9 * max(1.0, start):
                if transfer:
                    steps.append(PathStep(edge.label or f"{instance.tasks[edge.src]}→{instance.tasks[task]}",
                                          "transfer", transfer, f"{instance.options[choice[edge.src]].device}→{option.device}"))
                task = edge.src
                break
        else:
            break
    return steps[::-1]


# ---------------------------------------------------------------- baselines, binding constraints, Pareto front


def baseline_instances(built: AgentInstance) -> dict[str, list[tuple[str, Instance]]]:
    """Every homogeneous fleet and every disaggregated pair as a restricted instance, by baseline kind.

    Homogeneous: every LLM step (prefill and decode) on one accelerator class; other model ops there or on a CPU
    class. Pair: prefill on one class, decode on another. A profiled problem has no LLM steps: its homogeneous
    baseline puts every task on one class, and it has no pair."""
    instance, roles = built.instance, built.roles
    accelerators = [n for n, c in instance.classes.items() if not c.pooled]
    found: dict[str, list[tuple[str, Instance]]] = {"homogeneous": [], "pair": []}
    if all(role == "task" for role in roles):
        for name in instance.classes:
            found["homogeneous"].append((f"all on {name}", instance.restricted(lambda o, n=name: o.device == n)))
        return found

    def keep(prefill: str, decode: str):
        def accept(option) -> bool:
            role = roles[option.task]
            if role == "prefill":
                return option.device == prefill
            if role == "decode":
                return option.device == decode
            return instance.classes[option.device].pooled or option.device in (prefill, decode)
        return accept

    for a in accelerators:
        found["homogeneous"].append((f"all on {a}", instance.restricted(keep(a, a))))
        for b in accelerators:
            if a != b:
                found["pair"].append((f"{a}::{b}", instance.restricted(keep(a, b))))
    return found


def compare(built: AgentInstance, problem: Problem, solution: Solution) -> dict[str, Baseline]:
    result = {}
    for kind, candidates in baseline_instances(built).items():
        best, best_name, why = None, None, "no class to try"
        for name, restricted in candidates:
            if any(not restricted.by_task[t] for t in range(len(restricted.tasks))):
                why = "no option meets the limits on these classes"
                continue
            try:
                found = solve(restricted)
            except Infeasible:
                why = "no homogeneous choice meets the SLA"
                continue
            if best is None or found.objective < best.objective:
                best, best_name = found, name
        if best is None:
            if candidates:
                result[kind] = Baseline(kind, False, why=why)
            continue
        result[kind] = Baseline(best_name, True, best.usd_per_hour,
                                best.usd_per_hour / (problem.rate_rps * SECONDS_PER_HOUR), best.makespan_s,
                                1 - solution.objective / best.objective if best.objective else None)
    return result


def bindings(built: AgentInstance, problem: Problem, solution: Solution) -> list[Binding]:
    """The constraints that stop this plan from being cheaper."""
    instance = built.instance
    found: list[Binding] = []
    if instance.sla_s is not None:
        try:
            unbounded = solve(dataclasses.replace(instance, sla_s=None))
            if unbounded.objective < solution.objective - 1e-9:
                found.append(Binding("e2e_sla", f"end-to-end {solution.makespan_s:.3f} s of {instance.sla_s:g} s; "
                                     f"without the SLA the fleet would cost ${unbounded.usd_per_hour:.2f}/h",
                                     value=solution.makespan_s, limit=instance.sla_s))
        except Infeasible:
            pass
    for name, count in solution.counts.items():
        limit = instance.classes[name].max_count
        if limit is not None and count >= limit:
            found.append(Binding("device_limit", f"{count} of at most {limit} {name}", device=name,
                                 value=count, limit=limit))
    for task, o in enumerate(solution.choice):
        chosen_cost = instance.option_cost(o)
        cheaper = [d for d in built.dropped if d.task == task and d.usd_per_hour < chosen_cost - 1e-9]
        if cheaper:
            d: Dropped = min(cheaper, key=lambda d: d.usd_per_hour)
            needs = (f"only {d.value:.3g} calls are in flight at the offered rate" if d.constraint == "occupancy"
                     else f"needs {d.value:.3g} {'GB' if d.constraint == 'memory' else 's'} (limit {d.limit:.3g})")
            found.append(Binding(d.constraint, f"{instance.tasks[task]}: {d.device} tp {d.tp} batch {d.batch} would "
                                 f"cost ${d.usd_per_hour:.2f}/h but {needs}",
                                 op=instance.tasks[task], device=d.device, value=d.value, limit=d.limit))
        option = instance.options[o]
        grid = problem.search.get({"prefill": "prefill_batch", "decode": "decode_batch"}.get(built.roles[task], ""), [])
        if grid and option.batch == max(grid):
            found.append(Binding("option_grid", f"{instance.tasks[task]}: batch {option.batch} is the largest searched",
                                 op=instance.tasks[task], device=option.device, value=option.batch, limit=max(grid)))
    return found


def pareto_front(instance: Instance, rate_rps: float, *, points: int = 16, step: float = 0.01) -> list[dict]:
    """The cost–latency front, cheapest first: the cheapest plan made as fast as it can be at its cost, then
    repeatedly the cheapest one at least `step` (relative) faster (ε-constraint method; no point dominates
    another; the step keeps sub-millisecond gains from filling the front)."""
    front = []
    bound = None
    for _ in range(points):
        try:
            cheapest = solve(instance, max_makespan_s=bound)
        except Infeasible:
            break
        found = solve(instance, minimise="latency", max_cost=cheapest.objective)
        if front and found.makespan_s >= front[-1]["e2e_s"]:
            # the latency solve stopped within its MIP gap no faster than the last point: the bounded cheapest
            # plan is faster than it; when that is not either, the front is complete
            if cheapest.makespan_s >= front[-1]["e2e_s"]:
                break
            found = cheapest
        if front and found.usd_per_hour <= front[-1]["usd_per_hour"]:
            front.pop()  # as cheap and faster: the last point was dominated
        front.append({"e2e_s": found.makespan_s, "usd_per_hour": found.usd_per_hour,
                      "usd_per_request": found.usd_per_hour / (rate_rps * SECONDS_PER_HOUR), "devices": dict(found.counts)})
        bound = found.makespan_s * (1 - step)
    return front
