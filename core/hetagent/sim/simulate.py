"""A plan against requests: rebuild its problem's instance, find the options the plan chose, replay."""

from __future__ import annotations

import random
from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.planner.options import AgentInstance
from hetagent.plan import Plan
from hetagent.planner.problem import Problem, Trace, load_trace
from hetagent.sim.replay import Request, SimResult, simulate

SYNTHETIC_SECONDS = 600.0
MAX_REQUESTS = 2_000_000  # bounds one simulation's work (about a minute here): spec/plan-format.md, Limits


def requests_for(problem: Problem, trace: str | Path | None = None, seconds: float | None = None,
                 seed: int = 0) -> tuple[list[Request], str]:
    """The requests to replay and where they come from: a trace file, the problem's trace, or Poisson arrivals
    at the problem's rate with its mean lengths (`seconds` long, default 10 minutes)."""
    source: Trace | None = load_trace(trace, limit_s=seconds) if trace else problem.trace
    if source is not None:
        if seconds is not None and source is problem.trace:
            source = load_trace(source.path, limit_s=seconds)
        return ([Request(a, i, o) for a, i, o in zip(source.arrivals_s, source.input_tokens, source.output_tokens)],
                source.path)
    rng = random.Random(seed)
    span = seconds or SYNTHETIC_SECONDS
    if problem.rate_rps * span > MAX_REQUESTS:
        raise HetagentError(f"{problem.source}: {problem.rate_rps:g} requests/s for {span:g} s is "
                            f"{problem.rate_rps * span:,.0f} requests; a simulation replays at most {MAX_REQUESTS:,} "
                            "(give fewer --seconds)")
    arrivals, clock = [], rng.expovariate(problem.rate_rps)
    while clock < span:
        arrivals.append(Request(clock))
        clock += rng.expovariate(problem.rate_rps)
    return arrivals, f"Poisson arrivals at {problem.rate_rps:g}/s for {span:g} s, planned lengths"


def chosen_options(built: AgentInstance, plan: Plan) -> tuple[int, ...]:
    """The option of each task that the plan placed (device, TP degree, batch)."""
    choice = []
    for task, label in enumerate(built.instance.tasks):
        entry = plan.ops.get(label)
        placement = plan.placements.get(label, plan.default)
        matches = [o for o in built.instance.by_task[task]
                   if entry is not None and built.instance.options[o].device == entry.device
                   and built.instance.options[o].tp == placement.tp and built.instance.options[o].batch == placement.batch]
        if not matches:
            raise HetagentError(f"the plan places op {label!r} on an option its problem no longer offers (was the "
                                "problem or the agent changed since planning? re-plan it)")
        choice.append(matches[0])
    return tuple(choice)


def simulate_plan(plan: Plan, problem: Problem, built: AgentInstance, requests: list[Request], *,
                  sla_s: float | None = None) -> SimResult:
    """Replay `requests`; attainment is measured against `sla_s` (the user's SLA), by default the plan's."""
    if not requests:
        raise HetagentError("no requests to simulate (an empty trace, or --seconds too short)")
    choice = chosen_options(built, plan)
    counts = {name: d.count for name, d in plan.devices.items()}
    return simulate(built, choice, counts, plan.placements, requests, steps=problem.steps,
                    sla_s=sla_s if sla_s is not None else plan.latency.sla_s,
                    percentile_q=plan.latency.percentile or problem.percentile)
