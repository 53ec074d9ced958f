"""Replaying requests through a plan: queueing at every op's replicas, batching, transfers, tool latencies.

The model, kept as simple as the questions it answers (does the plan hold its SLA at a percentile, how busy is
each class):
- Each request walks the agent's task graph; a task is ready when every predecessor has finished and its output
  has crossed the link between their classes (the plan's transfer times: KV caches included).
- An op on a dedicated class has `replicas × batch` slots (continuous batching: a replica group serves up to
  `batch` requests at once, each at the per-request time the plan was sized with). Requests take the earliest
  free slot in the order they became ready (FCFS); waiting for one is the queueing delay.
- Service times follow each request's lengths: a prefill scales with its prompt tokens, a decode with its output
  tokens, relative to the means the plan used. Ops on pooled (CPU) classes and tool calls are delays: a socket's
  cores serve them in parallel, and a tool's latency is spent elsewhere.
- An op in a loop runs its expected trips back to back (as planned); an op in a branch arm runs with the arm's
  probability.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from hetagent.planner.options import AgentInstance


@dataclass(frozen=True)
class Request:
    arrival_s: float
    input_tokens: int | None = None  # for the workload's LLM steps; None: the planned mean
    output_tokens: int | None = None


@dataclass
class SimResult:
    requests: int
    duration_s: float
    e2e_s: list[float]
    ttft_s: list[float]
    tbt_s: list[float]
    busy_device_s: dict[str, float]
    counts: dict[str, int]
    sla_s: float | None
    percentile: float
    queue_s: dict[str, float] = field(default_factory=dict)  # op -> mean wait for a slot

    def summary(self) -> dict:
        def quantiles(values):
            return {f"p{q}": percentile(values, q) for q in (50, 90, 99)} if values else {}

        e2e = quantiles(self.e2e_s)
        return {
            "requests": self.requests,
            "duration_s": self.duration_s,
            "e2e_s": e2e,
            "ttft_s": quantiles(self.ttft_s),
            "tbt_s": quantiles(self.tbt_s),
            "sla_s": self.sla_s,
            "percentile": self.percentile,
            "e2e_at_percentile_s": percentile(self.e2e_s, self.percentile),
            "sla_attainment": (sum(1 for v in self.e2e_s if v <= self.sla_s) / len(self.e2e_s)) if self.sla_s and self.e2e_s else None,
            "utilisation": {name: self.busy_device_s.get(name, 0.0) / (count * self.duration_s)
                            for name, count in self.counts.items() if count and self.duration_s > 0},
            "mean_queue_s": self.queue_s,
        }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def simulate(built: AgentInstance, choice: tuple[int, ...], counts: dict[str, int], placements: dict,
             requests: list[Request], *, steps: tuple[str, ...] | None, sla_s: float | None, percentile_q: float,
             seed: int = 0) -> SimResult:
    """Run `requests` through the plan given by `choice` (an option per task) and its `placements`
    (label -> Placement: replicas and batch)."""
    instance, graph, roles = built.instance, built.graph, built.roles
    rng = random.Random(seed)
    n = len(instance.tasks)
    successors: list[list[tuple[int, dict]]] = [[] for _ in range(n)]
    predecessors = [0] * n
    for edge in instance.edges:
        successors[edge.src].append((edge.dst, edge.transfer_s))
        predecessors[edge.dst] += 1
    options = [instance.options[o] for o in choice]
    delay_only = [instance.classes[o.device].pooled or graph.tasks[t].op == "tool.compute" for t, o in enumerate(options)]
    slots: list[list[float]] = []
    for task in range(n):
        placement = placements.get(graph.tasks[task].label)
        capacity = (placement.replicas * placement.batch) if placement else 1
        slots.append([0.0] * max(1, capacity))
    applies = [roles[t] in ("prefill", "decode") and (steps is None or graph.tasks[t].label.rpartition(".")[0] in steps)
               for t in range(n)]

    e2e, ttft, tbt = [], [], []
    busy: dict[str, float] = {}
    waited: dict[int, list[float]] = {}
    events: list[tuple[float, int, int, int]] = []  # (ready time, sequence, request, task)
    sequence = 0
    pending: list[list[int]] = []
    ready_at: list[list[float]] = []
    runs: list[list[bool]] = []
    finished_at: list[float] = []
    for r, request in enumerate(requests):
        pending.append(list(predecessors))
        ready_at.append([request.arrival_s] * n)
        runs.append([_runs(graph.tasks[t].executions, rng) for t in range(n)])
        finished_at.append(request.arrival_s)
        for task in range(n):
            if predecessors[task] == 0:
                heapq.heappush(events, (request.arrival_s, sequence, r, task))
                sequence += 1
    while events:
        ready, _, r, task = heapq.heappop(events)
        request, option = requests[r], options[task]
        service = 0.0
        if runs[r][task]:
            service = _service(option, roles[task], applies[task], request)
            service *= max(1.0, graph.tasks[task].executions)  # a loop's trips, back to back
        if delay_only[task] or service == 0.0:
            start = ready
            if runs[r][task]:  # a pooled class still spends the op's CPU time (a tool's wait is not its work)
                busy[option.device] = busy.get(option.device, 0.0) + option.detail.busy_s * max(1.0, graph.tasks[task].executions)
        else:
            free = heapq.heappop(slots[task])
            start = max(ready, free)
            heapq.heappush(slots[task], start + service)
            waited.setdefault(task, []).append(start - ready)
            # a replica group of tp devices serves `batch` requests at once: each holds tp/batch of it
            occupancy = option.detail.busy_s / option.detail.latency_s if option.detail.latency_s else option.tp
            busy[option.device] = busy.get(option.device, 0.0) + service * occupancy
        done = start + service
        finished_at[r] = max(finished_at[r], done)
        if roles[task] == "prefill" and runs[r][task]:
            ttft.append(done - ready + _kv_seconds(instance, choice, task))
        if roles[task] == "decode" and runs[r][task]:
            tbt.append(option.detail.tbt_s or 0.0)
        for successor, transfer in successors[task]:
            arrive = done + (transfer.get((choice[task], options[successor].device), 0.0) if runs[r][task] else 0.0)
            ready_at[r][successor] = max(ready_at[r][successor], arrive)
            pending[r][successor] -= 1
            if pending[r][successor] == 0:
                heapq.heappush(events, (ready_at[r][successor], sequence, r, successor))
                sequence += 1
    for r, request in enumerate(requests):
        e2e.append(finished_at[r] - request.arrival_s)
    duration = (max(finished_at) - requests[0].arrival_s) if requests else 0.0
    queue = {instance.tasks[t]: sum(w) / len(w) for t, w in waited.items() if w}
    return SimResult(len(requests), duration, e2e, ttft, tbt, busy, counts, sla_s, percentile_q, queue)


def _runs(executions: float, rng: random.Random) -> bool:
    """A branch arm's op runs with its probability; everything else runs."""
    return executions >= 1.0 or rng.random() < executions


def _service(option, role: str, applies: bool, request: Request) -> float:
    """One execution's time for this request: the planned time, scaled by its own lengths where they apply."""
    timing = option.detail
    if applies and role == "prefill" and request.input_tokens:
        return timing.latency_s * request.input_tokens / timing.tokens_in
    if applies and role == "decode" and request.output_tokens:
        return timing.tbt_s * max(request.output_tokens - 1, 1)
    return timing.latency_s


def _kv_seconds(instance, choice, prefill: int) -> float:
    for edge in instance.edges:
        if edge.src == prefill and edge.label:
            return edge.transfer_s.get((choice[prefill], instance.options[choice[edge.dst]].device), 0.0)
    return 0.0
