"""The optimisation problem in solver terms: tasks, their options, the edges between them, device classes.

Everything the MILP (`hetagent.planner.milp`) needs and nothing of where it came from: an agent through the cost
model (`hetagent.planner.options`) or the paper's profiled tables (`hetagent.planner.profiled`) both build one.
An option is one way to run a task: a device class, a TP degree, a batch, and what that costs at the offered
rate. Its latency is the task's contribution to the request's path (loop trips included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any


@dataclass(frozen=True)
class DeviceClass:
    name: str
    usd_per_hour: float  # one device
    pooled: bool = False  # ops share the class's devices (CPUs) instead of owning replica groups
    max_count: int | None = None
    backend: str = ""


@dataclass(frozen=True)
class Option:
    task: int
    device: str
    latency_s: float  # on the request's path, loop trips included
    devices: int = 0  # dedicated devices at the offered rate (0 on a pooled class)
    demand: float = 0.0  # pooled class: devices' worth of busy time at the offered rate
    usd_per_hour: float = 0.0  # a cost given for the option itself (profiled problems), beyond its devices
    penalty_usd_per_hour: float = 0.0  # soft per-task SLA: λ · how far latency exceeds the task's limit
    tp: int = 1
    batch: int = 1
    detail: Any = None  # what the plan reports about it (the builder's record); the solver ignores it


@dataclass(frozen=True)
class Edge:
    src: int
    dst: int
    # seconds to move the src's output to the dst, by (index of the src's option, dst's class); absent: 0
    transfer_s: dict[tuple[int, str], float] = field(default_factory=dict)
    label: str = ""  # the kv.transfer op it stands for, if any


@dataclass(frozen=True)
class Conflict:
    """Option `option` may not run together with task `task` on class `device` (a TTFT broken by the transfer)."""

    option: int
    task: int
    device: str
    why: str = ""


@dataclass
class Instance:
    tasks: list[str]
    options: list[Option]
    edges: list[Edge]
    classes: dict[str, DeviceClass]
    sla_s: float | None = None
    slack_penalty: float | None = None  # $/hour per second over the SLA; None: the SLA is hard
    conflicts: list[Conflict] = field(default_factory=list)

    def __post_init__(self):
        self.by_task: list[list[int]] = [[] for _ in self.tasks]
        for index, option in enumerate(self.options):
            self.by_task[option.task].append(index)

    def option_cost(self, index: int) -> float:
        """$/hour an option adds by itself: its dedicated devices, its own cost and its soft per-task penalty."""
        option = self.options[index]
        return option.devices * self.classes[option.device].usd_per_hour + option.usd_per_hour + option.penalty_usd_per_hour

    def restricted(self, keep) -> "Instance":
        """The same problem with only the options `keep(option)` accepts (baselines, what-ifs)."""
        kept = [i for i, o in enumerate(self.options) if keep(o)]
        renumber = {old: new for new, old in enumerate(kept)}
        edges = [Edge(e.src, e.dst, {(renumber[o], c): t for (o, c), t in e.transfer_s.items() if o in renumber}, e.label)
                 for e in self.edges]
        conflicts = [Conflict(renumber[c.option], c.task, c.device, c.why) for c in self.conflicts if c.option in renumber]
        return Instance(self.tasks, [self.options[i] for i in kept], edges, self.classes, self.sla_s,
                        self.slack_penalty, conflicts)


@dataclass(frozen=True)
class Solution:
    choice: tuple[int, ...]  # option index per task
    start_s: tuple[float, ...]
    makespan_s: float
    slack_s: float
    counts: dict[str, int]  # devices per class
    usd_per_hour: float  # fleet cost (without the soft-SLA penalty)
    penalty_usd_per_hour: float
    seconds: float = 0.0  # solver wall time
    variables: int = 0
    constraints: int = 0
    optimal: bool = True  # False: the solver's time limit ran out first; this is the best it found

    @property
    def objective(self) -> float:
        return self.usd_per_hour + self.penalty_usd_per_hour


def evaluate(instance: Instance, choice: tuple[int, ...]) -> Solution | None:
    """The exact cost and schedule of one choice of options (None: it breaks a device limit or a conflict).

    The reference the MILP is proved against: earliest start times along the DAG in topological order, pooled
    classes rounded up to whole devices, the soft SLA's slack charged at its penalty."""
    chosen_class = {task: instance.options[o].device for task, o in enumerate(choice)}
    chosen = set(choice)
    for conflict in instance.conflicts:
        if conflict.option in chosen and chosen_class[conflict.task] == conflict.device:
            return None
    counts = device_counts(instance, choice)
    for name, count in counts.items():
        limit = instance.classes[name].max_count
        if limit is not None and count > limit:
            return None
    start = [0.0] * len(instance.tasks)
    for edge in topological_edges(instance):
        u_option = choice[edge.src]
        ready = start[edge.src] + instance.options[u_option].latency_s
        ready += edge.transfer_s.get((u_option, chosen_class[edge.dst]), 0.0)
        start[edge.dst] = max(start[edge.dst], ready)
    makespan = max((start[t] + instance.options[o].latency_s for t, o in enumerate(choice)), default=0.0)
    slack = 0.0
    if instance.sla_s is not None and makespan > instance.sla_s * (1 + 1e-6):
        if instance.slack_penalty is None:
            return None
        slack = makespan - instance.sla_s
    cost = sum(counts[name] * instance.classes[name].usd_per_hour for name in counts if instance.classes[name].pooled)
    cost += sum(instance.options[o].devices * instance.classes[instance.options[o].device].usd_per_hour
                + instance.options[o].usd_per_hour for o in choice)
    penalty = sum(instance.options[o].penalty_usd_per_hour for o in choice) + (instance.slack_penalty or 0.0) * slack
    return Solution(tuple(choice), tuple(start), makespan, slack, counts, cost, penalty)


def device_counts(instance: Instance, choice: tuple[int, ...]) -> dict[str, int]:
    """Devices per class: dedicated options' devices summed; pooled classes' demand rounded up (≥ 1 if used)."""
    dedicated: dict[str, int] = {}
    pooled: dict[str, float] = {}
    for o in choice:
        option = instance.options[o]
        if instance.classes[option.device].pooled:
            pooled[option.device] = pooled.get(option.device, 0.0) + option.demand
        else:
            dedicated[option.device] = dedicated.get(option.device, 0) + option.devices
    # a hair under an integer is that integer: demand sums carry float rounding
    counts = {name: max(1, math.ceil(demand - 1e-9)) for name, demand in pooled.items()}
    return {**dedicated, **counts}


def topological_edges(instance: Instance) -> list[Edge]:
    """The edges ordered so that every edge into a task comes before any edge out of it."""
    order = TopologicalSorter({t: set() for t in range(len(instance.tasks))})
    for edge in instance.edges:
        order.add(edge.dst, edge.src)
    rank = {task: i for i, task in enumerate(order.static_order())}
    return sorted(instance.edges, key=lambda e: rank[e.src])
