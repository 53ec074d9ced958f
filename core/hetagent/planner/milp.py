"""The exact solver: a mixed-integer linear program over an `Instance`, solved by HiGHS (`scipy.optimize.milp`).

Variables: a binary x_o per option; a start time S_i per task; the makespan T; the SLA slack (soft SLA only);
an integer device count N_j per pooled class; a transfer time τ_e per edge that can move data. Constraints:

    Σ_{o ∈ i} x_o = 1                                   one option per task
    S_v ≥ S_u + Σ_{o∈u} d_o x_o + τ_uv                   every edge u→v
    τ_uv ≥ Σ_{o∈u} t(o, j) x_o − M_j (1 − X_vj)          every class j that v may run on
    T ≥ S_i + Σ_{o∈i} d_o x_o                           every sink
    T − slack ≤ SLA                                      (T ≤ SLA when the SLA is hard)
    Σ_{o on j} devices_o x_o ≤ max_j                     dedicated classes
    N_j ≥ Σ_{o on j} demand_o x_o,  N_j ≥ X_ij,  N_j ≤ max_j   pooled classes
    x_o + X_{task, class} ≤ 1                            conflicts (a TTFT the KV transfer would break)

X_vj is Σ of v's options on class j and M_j = max_o t(o, j): the τ row binds only when v runs on j, so the
transfer time — a product of two choices (u's option, v's class) — stays linear. (One row per class of v is
3-4× faster on 50-op instances than one big-M row per group of u's options, the first formulation tried.)

Objective: fleet $/hour + per-task penalties + λ·slack; or the makespan, then the cheapest fleet at that makespan (two solves: a tiny tie-break weight in one objective trips
HiGHS's presolve into a suboptimal answer, seen with scipy 1.17).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace

import numpy as np

from hetagent.planner.instance import Instance, Solution, evaluate

MIP_GAP = 1e-7  # HiGHS's default (1e-4) would stop short of the optimum the tests prove


class Infeasible(Exception):
    """No choice of options meets the hard constraints."""


def solve(instance: Instance, *, minimise: str = "cost", max_makespan_s: float | None = None,
          max_cost: float | None = None, time_limit_s: float = 60.0) -> Solution:
    """The optimal choice of options; `minimise` is "cost" ($/hour + penalties) or "latency" (the makespan, at the
    lowest cost). `max_makespan_s` and `max_cost` bound the other objective (the Pareto sweep). Raises
    `Infeasible`."""
    if minimise == "latency":
        fastest = _solve(instance, "latency", max_makespan_s, max_cost, time_limit_s)
        return _solve(instance, "cost", fastest.makespan_s * (1 + 1e-9) + 1e-12, max_cost, time_limit_s)
    return _solve(instance, "cost", max_makespan_s, max_cost, time_limit_s)


def _solve(instance: Instance, minimise: str, max_makespan_s: float | None, max_cost: float | None,
           time_limit_s: float) -> Solution:
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    started = time.perf_counter()
    n_opt, n_task = len(instance.options), len(instance.tasks)
    pooled = [name for name, c in instance.classes.items() if c.pooled]
    soft = instance.sla_s is not None and instance.slack_penalty is not None
    S = n_opt  # start-time columns
    T = S + n_task
    SLACK = T + 1
    N = SLACK + (1 if soft else 0)
    n_var = N + len(pooled)
    pooled_col = {name: N + k for k, name in enumerate(pooled)}

    rows, cols, vals, lower, upper = [], [], [], [], []

    def add_row(entries: dict[int, float], lo: float, hi: float) -> None:
        r = len(lower)
        for c, v in entries.items():
            if v:
                rows.append(r)
                cols.append(c)
                vals.append(v)
        lower.append(lo)
        upper.append(hi)

    by_class: list[dict[str, list[int]]] = []
    for task in range(n_task):
        grouped = defaultdict(list)
        for o in instance.by_task[task]:
            grouped[instance.options[o].device].append(o)
        by_class.append(grouped)
        if not instance.by_task[task]:
            raise Infeasible(f"task {instance.tasks[task]!r} has no option")
        add_row({o: 1.0 for o in instance.by_task[task]}, 1.0, 1.0)

    has_successor = set()
    transfer_edges = [e for e in instance.edges if any(e.transfer_s.values())]
    TAU = n_var  # one transfer-time column per edge that can move data
    n_var += len(transfer_edges)
    tau_col = {id(e): TAU + k for k, e in enumerate(transfer_edges)}
    for edge in instance.edges:
        u, v = edge.src, edge.dst
        has_successor.add(u)
        precedence = defaultdict(float, {S + v: 1.0, S + u: -1.0})
        for o in instance.by_task[u]:
            precedence[o] -= instance.options[o].latency_s
        if id(edge) in tau_col:
            precedence[tau_col[id(edge)]] = -1.0
            # τ ≥ Σ_o t(o, j) x_o − M_j (1 − X_vj) for each class j of v: the transfer to where v runs
            for j, members in by_class[v].items():
                times = {o: edge.transfer_s.get((o, j), 0.0) for o in instance.by_task[u]}
                big_m = max(times.values())
                if big_m == 0:
                    continue
                row = defaultdict(float, {tau_col[id(edge)]: 1.0})
                for o, t in times.items():
                    row[o] -= t
                for o in members:
                    row[o] -= big_m
                add_row(row, -big_m, np.inf)
        add_row(precedence, 0.0, np.inf)  # v starts once u has ended and its output has arrived
    for task in range(n_task):
        if task not in has_successor:
            row = {T: 1.0, S + task: -1.0}
            for o in instance.by_task[task]:
                row[o] = -instance.options[o].latency_s
            add_row(row, 0.0, np.inf)
    if instance.sla_s is not None and soft:
        add_row({T: 1.0, SLACK: -1.0}, -np.inf, instance.sla_s)
    if max_makespan_s is not None:
        add_row({T: 1.0}, -np.inf, max_makespan_s)

    for name, device_class in instance.classes.items():
        members = [o for o, option in enumerate(instance.options) if option.device == name]
        if not members:
            continue
        if device_class.pooled:
            col = pooled_col[name]
            add_row({col: 1.0, **{o: -instance.options[o].demand for o in members}}, 0.0, np.inf)
            for task in range(n_task):
                if by_class[task].get(name):
                    add_row({col: 1.0, **{o: -1.0 for o in by_class[task][name]}}, 0.0, np.inf)
        elif device_class.max_count is not None:
            add_row({o: float(instance.options[o].devices) for o in members}, -np.inf, device_class.max_count)
    for conflict in instance.conflicts:
        row = {o: 1.0 for o in by_class[conflict.task].get(conflict.device, [])}
        row[conflict.option] = row.get(conflict.option, 0.0) + 1.0
        add_row(row, -np.inf, 1.0)

    cost = np.zeros(n_var)
    for o in range(n_opt):
        cost[o] = instance.option_cost(o)
    for name, col in pooled_col.items():
        cost[col] = instance.classes[name].usd_per_hour
    if soft:
        cost[SLACK] = instance.slack_penalty
    if max_cost is not None:
        add_row({c: v for c, v in enumerate(cost) if v}, -np.inf, max_cost * (1 + 1e-9) + 1e-12)
    if minimise == "latency":
        objective = np.zeros(n_var)
        objective[T] = 1.0
    else:
        objective = cost

    lo = np.zeros(n_var)
    hi = np.full(n_var, np.inf)
    hi[:n_opt] = 1.0
    if instance.sla_s is not None and not soft:
        hi[T] = instance.sla_s
    for name, col in pooled_col.items():
        limit = instance.classes[name].max_count
        hi[col] = limit if limit is not None else np.inf
    integrality = np.zeros(n_var)
    integrality[:n_opt] = 1
    integrality[N:N + len(pooled)] = 1

    matrix = coo_array((vals, (rows, cols)), shape=(len(lower), n_var)).tocsr()
    result = milp(objective, constraints=LinearConstraint(matrix, lower, upper), integrality=integrality,
                  bounds=Bounds(lo, hi), options={"mip_rel_gap": MIP_GAP, "time_limit": time_limit_s})
    if result.x is None:
        raise Infeasible(result.message)
    x = result.x[:n_opt]
    choice = tuple(max(instance.by_task[t], key=lambda o: x[o]) for t in range(n_task))
    solution = evaluate(instance, choice)
    if solution is None:  # cannot happen unless the model above and `evaluate` disagree
        raise AssertionError(f"the MILP's choice {choice} breaks a constraint `evaluate` checks")
    return replace(solution, seconds=time.perf_counter() - started, variables=n_var, constraints=len(lower),
                   optimal=result.status == 0)
