"""The cost–latency front as a PNG/SVG plot (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.planner.tco_chart import save_figure


def write_pareto_chart(plan, path: str | Path) -> Path:
    if not plan.pareto:
        raise HetagentError("--plot draws the cost–latency front: add --pareto")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    latency = [p["e2e_s"] for p in plan.pareto]
    cost = [p["usd_per_hour"] for p in plan.pareto]
    axes.step(latency, cost, where="post", color="tab:blue", alpha=0.5)
    axes.plot(latency, cost, "o", color="tab:blue", label="Pareto front (optimal per latency bound)")
    axes.plot([plan.latency.e2e_s], [plan.cost.usd_per_hour], "*", color="tab:red", markersize=14, label="plan")
    if plan.latency.sla_s:
        axes.axvline(plan.latency.sla_s, color="tab:red", linestyle="--", linewidth=1, label="SLA")
    axes.set_xlabel("end-to-end latency (s, planned)")
    axes.set_ylabel("fleet $/hour")
    axes.set_title(f"{plan.problem['name']}: cost vs latency at {plan.problem['rate_rps']:g} requests/s")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return save_figure(figure, path, dpi=120)
