"""Simulation speed (issue 4 figure: one hour of the Azure conversation trace, ≈19k requests, in ≤ 30 s).

    .venv/bin/python benchmarks/sim_speed.py

Plans `examples/problems/conv_trace.toml` (the RAG agent under the trace's rate and lengths), then replays the whole
trace through the plan and prints the simulation's wall time (planning excluded) with its percentiles. Needs
`../shared/data/traces/` next to the checkout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT.parent / "shared" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"


def main() -> None:
    if not TRACE.exists():
        sys.exit(f"{TRACE}: not found (the Azure traces live in ../shared/data, outside the repository)")
    from hetagent.cost import RooflineModel
    from hetagent.planner.planner import build, make_plan
    from hetagent.planner.problem import load_problem
    from hetagent.backend.registry import Registry
    from hetagent.sim.simulate import requests_for, simulate_plan

    model = RooflineModel.from_registry(Registry.load())
    problem = load_problem(ROOT / "examples/problems/conv_trace.toml")
    plan = make_plan(problem, model, baselines=False)
    built = build(problem, model)
    started = time.perf_counter()
    requests, origin = requests_for(problem)
    loaded = time.perf_counter() - started
    result = simulate_plan(plan, problem, built, requests).summary()
    elapsed = time.perf_counter() - started
    print(f"{result['requests']} requests over {result['duration_s'] / 60:.1f} min of {Path(origin).name}: "
          f"{elapsed:.2f} s ({loaded:.2f} s reading the trace) — target ≤ 30 s")
    e2e = result["e2e_s"]
    print(f"end-to-end p50/p90/p99 {e2e['p50']:.3f}/{e2e['p90']:.3f}/{e2e['p99']:.3f} s; SLA {result['sla_s']:g} s met by "
          f"{result['sla_attainment']:.1%}; utilisation "
          + ", ".join(f"{name} {value:.0%}" for name, value in result["utilisation"].items()))


if __name__ == "__main__":
    main()
