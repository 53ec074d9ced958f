"""The paper's formulation as an `Instance`: latency and $/hour per (task, class) given, not derived.

Each task's per-task SLA is soft when the problem gives a slack penalty λ (the option is charged λ · excess) and
hard otherwise (options over it are left out). Cut edges cost `output_bytes` over the fleet's link between the
two classes; a pair with no link given moves data for free.
"""

from __future__ import annotations

from hetagent.planner.graph import Dependency, Task, TaskGraph
from hetagent.planner.instance import DeviceClass, Edge, Instance, Option
from hetagent.planner.options import AgentInstance, Dropped, Timing
from hetagent.planner.problem import Problem


def build_profiled(problem: Problem) -> AgentInstance:
    classes = {c.device: DeviceClass(c.device, 0.0, max_count=c.max_count) for c in problem.fleet.classes}
    names = [t["name"] for t in problem.tasks]
    graph = TaskGraph(problem.name)
    options, dropped = [], []
    for index, entry in enumerate(problem.tasks):
        executions = float(entry.get("executions", 1.0))
        graph.tasks.append(Task(entry["name"], "task", {}, executions, True))
        limit = entry["sla_ms"] / 1000 if "sla_ms" in entry else None
        for device, figures in entry["on"].items():
            latency = figures["latency_ms"] / 1000
            over = max(0.0, latency - limit) if limit is not None else 0.0
            if over and problem.slack_penalty_per_s is None:
                dropped.append(Dropped(index, device, 1, 1, "task_sla", latency, limit, figures["usd_per_hour"]))
                continue
            # the cost is given per (task, class), so the class itself is priced at 0 per device
            options.append(Option(index, device, executions * latency, devices=figures.get("devices", 1),
                                  usd_per_hour=figures["usd_per_hour"],
                                  penalty_usd_per_hour=(problem.slack_penalty_per_s or 0.0) * over,
                                  detail=Timing(latency, 0.0)))
    edges = []
    for index, entry in enumerate(problem.tasks):
        for before in entry.get("after", []):
            src = names.index(before)
            nbytes = float(problem.tasks[src].get("output_bytes", 0.0))
            graph.dependencies.append(Dependency(src, index, nbytes))
            transfer = {}
            for o, option in enumerate(options):
                if option.task == src and nbytes:
                    for device in classes:
                        link = problem.fleet.link(option.device, device)
                        if device != option.device and link is not None:
                            transfer[(o, device)] = link.latency_s + nbytes / (link.gbps * 1e9)
            edges.append(Edge(src, index, transfer))
    instance = Instance(names, options, edges, classes, problem.e2e_s, problem.slack_penalty_per_s)
    unplaceable = {i: f"task {n!r} has no option within its sla_ms" for i, n in enumerate(names)
                   if not instance.by_task[i] and not any(d.task == i for d in dropped)}
    return AgentInstance(instance, graph, ["task"] * len(names), dropped, unplaceable)
