"""The exact solver: a mixed-integer linear program over an `Instance`, solved by HiGHS (`highspy`).

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

Objective: fleet $/hour + per-task penalties + λ·slack; or the makespan, then the cheapest fleet at that makespan
(two solves: a tiny tie-break weight in one objective trips HiGHS's presolve into a suboptimal answer, seen with
scipy 1.17's HiGHS).

Solving: the LP relaxation first, then the MILP over a core of the options picked by the LP's reduced costs, then
the MILP over every option that could beat the core's optimum, started from it (`_branch_and_bound_on_a_core`:
exact, by LP duality). On the 50-op benchmark HiGHS's LP bound is within 1-3 % of the optimum and ~80 % of the
options can be fixed to 0 that way; HiGHS would find that out too, but only after seconds of root-node cuts and
sub-MIP heuristics on the whole model. Tried and not kept (measured no faster on `benchmarks/planner_scale.py`):
lifted big-M coefficients per pair of classes (tighter LP, denser rows), τ folded into the precedence rows, explicit
class variables X_vj, start-time windows from the fastest options, an objective cut-off, and removing options
dominated in latency, cost, devices and transfers (about 1 % of the benchmark's options).

Where the time goes (issue 17, 50-op benchmark): nearly all of it is HiGHS's branch and bound (HiGHS's own cut
separation about a third of it); the last MILP alone, handed the optimum as its incumbent, still takes 0.7-1.4 CPU
seconds on a loaded machine. The hard part is the whole-device rounding of pooled counts meeting a binding SLA and
the transfer rows: with N_j continuous the same instances solve 2-7× faster, without transfer times (the SLA set as
tightly) 3-5× faster, with the SLA lifted 12× faster. The ceiling by itself is LP-tight (the convex hull of c·⌈D⌉ is
c·D), so cuts on the count rows alone barely move the bound. Also tried, exact, and no faster: mixed-integer
rounding cuts on N_j ≥ Σ demand·x (LP bound +0.1 %); each pooled count as a ladder of binaries; transfer floor rows
τ_uv ≥ Σ_o min_j t(o, j) x_o, or per class a of v with the minimum over v's other classes less M_a·X_va
(+0.1-0.3 %); dropping edges a longer path implies (88 → 51 edges); dominance with latency and outgoing transfers
together (22 % of options); transfer rows added lazily (70 of 88 edges carry a transfer in the first solution: 4-5
re-solves); bounding each option's LP with x_o = 1 (fixes < 10 % more); the last MILP on a rebuilt, smaller model; a
no-good row instead of the incumbent; HiGHS options (restarts, cuts at nodes, symmetry, pseudo-cost reliability,
heuristic effort, the core's gap); SCIP 6.3 on the whole model (4.6-8.7 s).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np

from hetagent.errors import HetagentError
from hetagent.planner.instance import Instance, Solution, evaluate

MIP_GAP = 1e-7  # HiGHS's default (1e-4) would stop short of the optimum the tests prove
# The first MILP branches over the options whose reduced cost in the LP relaxation is within this fraction of the
# LP's optimum: small enough to solve fast, large enough to hold a near-optimal choice (see _branch_and_bound_on_a_core)
CORE_GAP = 0.005


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
    matrix = coo_array((vals, (rows, cols)), shape=(len(lower), n_var)).tocsc()
    integrality = np.zeros(n_var, dtype=np.int32)
    integrality[:n_opt] = 1
    integrality[N:N + len(pooled)] = 1
    highs = _highs(objective, matrix, np.array(lower, dtype=float), np.array(upper, dtype=float), lo, hi, integrality)
    x, optimal = _branch_and_bound_on_a_core(highs, n_opt, hi[:n_opt], started + time_limit_s)
    if x is None:
        raise Infeasible("no choice of options meets the constraints")
    choice = tuple(max(instance.by_task[t], key=lambda o: x[o]) for t in range(n_task))
    solution = evaluate(instance, choice)
    if solution is None:  # cannot happen unless the model above and `evaluate` disagree
        raise AssertionError(f"the MILP's choice {choice} breaks a constraint `evaluate` checks")
    return replace(solution, seconds=time.perf_counter() - started, variables=n_var, constraints=len(lower),
                   optimal=optimal)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what native code writes to file descriptor 1 to 2 instead: `--json` output owns stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # what C stdio buffered goes out while 1 is still 2
        os.dup2(saved, 1)
        os.close(saved)


def _highs(objective, matrix, row_lower, row_upper, col_lower, col_upper, integrality):
    """A HiGHS instance holding the model (quiet)."""
    import highspy

    for name, values in (("objective", objective), ("constraint", matrix.data), ("row bound", row_lower),
                         ("row bound", row_upper), ("column bound", col_lower), ("column bound", col_upper)):
        if np.isnan(values).any() or (name in ("objective", "constraint") and not np.isfinite(values).all()):
            # inputs are checked where they are read; this is the last line (HiGHS spins on a NaN for minutes)
            raise HetagentError(f"the planning model has a non-finite {name} coefficient; check the problem's "
                                "prices, rates and latencies")
    with _stdout_to_stderr():  # HiGHS prints its banner on creation, before output_flag can silence it
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("mip_rel_gap", MIP_GAP)
    lp = highspy.HighsLp()
    lp.num_row_, lp.num_col_ = matrix.shape
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = objective, col_lower, col_upper
    lp.row_lower_, lp.row_upper_ = row_lower, row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_row_, lp.a_matrix_.num_col_ = matrix.shape
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = matrix.indptr, matrix.indices, matrix.data
    lp.integrality_ = [highspy.HighsVarType(int(i)) for i in integrality]
    highs.passModel(lp)
    return highs


def _branch_and_bound_on_a_core(highs, n_opt: int, option_upper, deadline: float):
    """Solve the MILP in `highs` (option columns first) exactly, branching over a core of the options only.

    Reduced-cost fixing, done before the MILP rather than inside it: with z_LP the LP relaxation's optimum and
    r_o ≥ 0 the reduced cost of option o at its lower bound, every feasible choice that takes o costs at least
    z_LP + r_o (LP duality). So once a feasible choice of cost z_inc is known, options with r_o > z_inc − z_LP
    cannot be in a better one and are fixed to 0. The incumbent comes from the MILP restricted to the options
    with the smallest reduced costs (CORE_GAP); the final MILP, over every option that could still improve on it,
    starts from it, so HiGHS spends no time on primal heuristics. Returns (option values, proved optimal), or
    (None, False) when nothing is feasible."""
    import highspy

    columns = np.arange(n_opt, dtype=np.int32)

    def run(keep, incumbent=None):
        highs.changeColsBounds(n_opt, columns, np.zeros(n_opt), np.where(keep, option_upper, 0.0))
        highs.setOptionValue("time_limit", max(deadline - time.perf_counter(), 0.01))
        # sub-MIP heuristics (RINS, RENS) cost more than they find on these models; given an incumbent, none run
        for name in ("mip_heuristic_run_rins", "mip_heuristic_run_rens"):
            highs.setOptionValue(name, False)
        for name in ("mip_heuristic_run_feasibility_jump", "mip_heuristic_run_root_reduced_cost"):
            highs.setOptionValue(name, incumbent is None)
        highs.setOptionValue("mip_heuristic_effort", 0.05 if incumbent is None else 0.0)
        if incumbent is not None:
            highs.setSolution(n_opt, columns, incumbent)
        highs.run()
        status = highs.getModelStatus()
        if highs.getInfo().primal_solution_status != 2:  # no feasible point found
            return None, status == highspy.HighsModelStatus.kOptimal
        return np.array(highs.getSolution().col_value[:n_opt]), status == highspy.HighsModelStatus.kOptimal

    everything = np.ones(n_opt, dtype=bool)
    highs.setOptionValue("solve_relaxation", True)
    highs.run()
    highs.setOptionValue("solve_relaxation", False)
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return run(everything)  # infeasible (or odd): let the MILP say so
    z_lp = highs.getInfo().objective_function_value
    reduced = np.array(highs.getSolution().col_dual[:n_opt])
    core = reduced <= CORE_GAP * abs(z_lp)
    x, proved = run(core)
    if x is None:
        return run(everything)
    z_inc = highs.getInfo().objective_function_value
    tolerance = 1e-6 * max(1.0, abs(z_inc))  # the LP's duals are exact to HiGHS's tolerances, not to the bit
    could_improve = reduced <= z_inc - z_lp + tolerance
    if proved and not (could_improve & ~core).any():
        return x, True  # the core holds every option a better choice could use: its optimum is the optimum
    better, proved = run(could_improve, incumbent=np.round(x))
    return (better, proved) if better is not None else (x, False)
