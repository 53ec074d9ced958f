"""The feedback loop: plan, simulate, and when the SLA misses at its percentile, re-plan with more headroom.

A plan sized for the SLA on mean service times can miss it at p99: queues form near the utilisation cap, and
long requests run long. Each round that misses lowers the utilisation cap (more replicas, shorter queues) and
tightens the latency target the MILP plans for by the ratio of the SLA to the simulated percentile (faster
options), until the simulated percentile meets the SLA or no plan can be made tighter.
"""

from __future__ import annotations

import dataclasses

from hetagent.plan import Plan
from hetagent.planner.planner import NoPlan, build, make_plan
from hetagent.planner.problem import Problem
from hetagent.sim.simulate import requests_for, simulate_plan

MAX_ROUNDS = 6
HEADROOM = 0.8  # each missed round multiplies the utilisation cap by this
MIN_UTILISATION = 0.2


def plan_until_simulated_sla(problem: Problem, model, *, trace=None, seconds=None, pareto=False, baselines=True,
                             progress=None) -> Plan:
    say = progress or (lambda _: None)
    requests, origin = requests_for(problem, trace, seconds)
    sla = target = None  # the SLA as planned first (the problem's, else the agent's), and the target planned for
    current, best, rounds = problem, None, 0
    for rounds in range(1, MAX_ROUNDS + 1):
        say(f"round {rounds}: plan at utilisation ≤ {current.max_utilisation:.2f}")
        try:
            plan = make_plan(current, model, pareto=pareto, baselines=baselines)
        except NoPlan:
            if best is None:
                raise
            break  # tighter than this is infeasible: keep the last plan
        sla = sla if sla is not None else plan.latency.sla_s
        target = target if target is not None else sla
        say(f"round {rounds}: simulate {len(requests)} requests")
        built = build(current, model)
        # attainment against the user's SLA, not the tightened target this round planned for
        summary = simulate_plan(plan, current, built, requests, sla_s=sla).summary()
        met = sla is None or summary["e2e_at_percentile_s"] <= sla
        best = (plan, summary, current, met)
        if met or current.max_utilisation * HEADROOM < MIN_UTILISATION:
            break
        target *= min(1.0, sla / summary["e2e_at_percentile_s"])
        current = dataclasses.replace(current, max_utilisation=current.max_utilisation * HEADROOM, e2e_s=target)
    plan, summary, planned_with, met = best
    plan.simulation = {**summary, "trace": origin, "rounds": rounds, "meets_sla": met,
                       "max_utilisation": planned_with.max_utilisation,
                       # the end-to-end latency the last round's MILP planned for (≤ the SLA: feedback tightens it)
                       "planning_target_s": planned_with.e2e_s if planned_with.e2e_s is not None else sla}
    plan.latency = dataclasses.replace(plan.latency, sla_s=sla)
    return plan
