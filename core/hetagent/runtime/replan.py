"""The slow path: resize the engine's worker pools when measured load and latency drift from the plan.

A plan (the planner's, `spec/plan-format.md`) expects a request rate (`problem.rate_rps`) and, per op label, a
latency and the device-seconds one execution occupies (`ops.<label>.latency_s`, `busy_s`,
`executions_per_request`). Over a sliding window the controller measures the arrival rate and each op's run time,
and forms the paper's correction factors, actual / expected:

    rate factor  = measured arrivals per second / planned rate
    op factor    = mean measured run time / planned latency          (per op label)

When any factor has moved by more than `threshold` (relative) since the last sizing — the plan itself counts as a
sizing with every factor 1 — it re-plans: each pool gets the planner's replica sizing (`replicas_for`) over the ops
it serves, with the measured rate and each op's busy time scaled by its factor, within [1, the engine's capacity
for the pool], and the engine scales the pool. Scaling down retires workers gracefully (`Engine.scale`), so
nothing accepted is dropped. It runs in the router's loop (`tick`, e.g. as `run`'s `on_tick`).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

from hetagent.errors import HetagentError
from hetagent.planner.options import replicas_for

RATE = "rate"  # the key of the rate factor among the op labels'


@dataclass(frozen=True)
class OpExpectation:
    executions: float  # per request
    latency_s: float  # one execution, as the request sees it
    busy_s: float  # device-seconds one execution occupies


@dataclass(frozen=True)
class Expectations:
    rate_rps: float
    max_utilisation: float
    ops: dict[str, OpExpectation]

    @classmethod
    def from_plan(cls, plan) -> Expectations:
        """From a plan `hetagent plan` wrote (`hetagent.plan.Plan` with its figures)."""
        return cls(float(plan.problem["rate_rps"]), float(plan.problem["max_utilisation"]),
                   {label: OpExpectation(o.executions_per_request, o.latency_s, o.busy_s)
                    for label, o in plan.ops.items()})


@dataclass
class Decision:
    at: float  # time.monotonic()
    factors: dict[str, float]
    replicas: dict[str, int]  # pool -> workers after the decision


@dataclass
class Replanner:
    expected: Expectations
    threshold: float = 0.25  # relative drift of a factor that triggers a re-plan
    window_s: float = 10.0  # measurements older than this are forgotten
    interval_s: float = 1.0  # at most one look per interval
    decisions: list[Decision] = field(default_factory=list)  # those that resized a pool

    def __post_init__(self):
        if self.expected.rate_rps <= 0 or not 0 < self.expected.max_utilisation <= 1:
            raise HetagentError("re-planning needs a plan with a positive rate_rps and max_utilisation in (0, 1]")
        if self.threshold <= 0 or self.window_s <= 0 or self.interval_s <= 0:
            raise HetagentError("re-planning: threshold, window and interval must be positive")
        self._basis = {RATE: 1.0, **{label: 1.0 for label in self.expected.ops}}  # factors of the last sizing
        self._arrivals: collections.deque[float] = collections.deque()
        self._runs: collections.deque[tuple[float, str, float]] = collections.deque()  # (finished, label, run_s)
        self._seen_requests = self._seen_ops = 0
        self._started: float | None = None
        self._looked = float("-inf")

    def tick(self, engine) -> Decision | None:
        """Measure, and re-plan if a factor has drifted past the threshold: the decision if it resized a pool."""
        now = time.monotonic()
        if self._started is None:
            self._started = now
        if now - self._looked < self.interval_s:
            return None
        self._looked = now
        self._observe(engine, now)
        factors = self._factors(now)
        # relative to the larger of the two, so that a factor falling to 0 (no arrivals) is a drift, and 0 -> 0 not
        if all(abs(f - self._basis[k]) <= self.threshold * max(f, self._basis[k]) for k, f in factors.items()):
            return None
        self._basis.update(factors)
        replicas = self._size(engine, self._basis)
        running = engine.pools()
        changed = {pool: count for pool, count in replicas.items() if len(running[pool]) != count}
        if not changed:
            return None
        for pool, count in changed.items():
            engine.scale(pool, count)
        decision = Decision(now, dict(self._basis), replicas)
        self.decisions.append(decision)
        return decision

    def _observe(self, engine, now: float) -> None:
        records = list(engine.requests.values())
        self._arrivals.extend(r.arrival for r in records[self._seen_requests:])
        self._seen_requests = len(records)
        self._runs.extend((o.finished, o.label, o.run_s) for o in engine.ops[self._seen_ops:]
                          if o.ok and o.worker != "engine" and o.label in self.expected.ops)
        self._seen_ops = len(engine.ops)
        while self._arrivals and self._arrivals[0] < now - self.window_s:
            self._arrivals.popleft()
        while self._runs and self._runs[0][0] < now - self.window_s:
            self._runs.popleft()

    def _factors(self, now: float) -> dict[str, float]:
        span = min(self.window_s, now - self._started)
        factors = {RATE: len(self._arrivals) / span / self.expected.rate_rps} if span > 0 else {}
        runs: dict[str, list[float]] = {}
        for _, label, run_s in self._runs:
            runs.setdefault(label, []).append(run_s)
        for label, times in runs.items():
            planned = self.expected.ops[label].latency_s
            if planned > 0:
                factors[label] = sum(times) / len(times) / planned
        return factors

    def _size(self, engine, factors: dict[str, float]) -> dict[str, int]:
        """Replicas per pool: the planner's sizing of the busy time of the ops each serves, corrected."""
        rate = self.expected.rate_rps * factors[RATE]
        busy: dict[str, float] = {}
        for node in engine.program.nodes():
            planned = self.expected.ops.get(node.label)
            pools = [name for name, plan in engine.plans.items() if plan.runs(node)]
            if planned is None or not pools:
                continue
            for pool in pools:  # pools sharing an op share its load
                busy[pool] = busy.get(pool, 0.0) + (planned.executions * planned.busy_s * factors[node.label]
                                                    / len(pools))
        return {pool: min(engine.capacity(pool), replicas_for(rate, 1.0, seconds, 1, self.expected.max_utilisation))
                for pool, seconds in busy.items()}
