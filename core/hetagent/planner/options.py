"""From an agent and a fleet to an `Instance`: every way to run every task, timed by the cost model.

Per (task, device class) the options are the (TP degree, batch) pairs of the problem's `[search]` that fit in
memory, meet the step's TTFT / TBT limits and that the offered rate fills: a batch no larger than the op's calls
in flight (Little's law: rate × executions × the option's latency) or the smallest batch searched — an emptier
batch would be costed as if full, yet run mostly empty at the size it was compiled for. Options no faster and no cheaper than another of the same class
and TP degree are dropped. What was dropped, and why, is kept for explaining a binding constraint or an
infeasible problem. Replica groups are sized for the offered rate at the utilisation cap (`spec/plan-format.md`
section 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from hetagent.cost.phases import memory_use, phase_time
from hetagent.cost.model import CostModel
from hetagent.cost.roofline import compute_dtype
from hetagent.errors import HetagentError
from hetagent.models.catalog import card
from hetagent.models.kernels import decode_kernels, prefill_kernels
from hetagent.planner.graph import TaskGraph
from hetagent.planner.instance import Conflict, DeviceClass, Edge, Instance, Option
from hetagent.planner.problem import Problem

LLM_OPS = ("llm.prefill", "llm.decode")
MODEL_OPS = {"audio.stt": "model", "audio.tts": "model", "memory.embed": "embed_model"}
# Ops with no model to run: CPU work (parsing, routing, a vector search, waiting on a tool). Their CPU time per
# run; a tool's own `latency_ms` is time on the request's path, spent elsewhere.
CPU_WORK_S = 0.001
# Tokens a model op processes when the IR does not say: a spoken question, a spoken answer, a query.
MODEL_TOKENS = {"audio.stt": 48, "audio.tts": 256, "memory.embed": 64}


def replicas_for(rate_rps: float, executions: float, busy_s: float, tp: int, max_utilisation: float) -> int:
    """Replica groups of `tp` devices that keep up with `rate_rps` requests/s, each running the op `executions`
    times for `busy_s` device-seconds, at the utilisation cap: the planner's sizing, and the re-planner's."""
    load = rate_rps * executions * busy_s / (tp * max_utilisation)
    return max(1, math.ceil(load - 1e-9))


@dataclass(frozen=True)
class Timing:
    """What the plan reports about one option (the `detail` of an `Option`)."""

    latency_s: float  # one execution, as the request sees it
    busy_s: float  # device-seconds one execution occupies
    ttft_s: float | None = None
    tbt_s: float | None = None
    tokens_in: int = 1  # the lengths it was timed at (LLM steps: the workload's means)
    tokens_out: int = 1


@dataclass(frozen=True)
class Dropped:
    """An option left out: which constraint excluded it, by how much."""

    task: int
    device: str
    tp: int
    batch: int
    constraint: str  # memory | ttft | tbt | occupancy
    value: float  # latency in s (GB for memory, calls in flight for occupancy)
    limit: float
    usd_per_hour: float


@dataclass
class AgentInstance:
    """The instance and what it was built from."""

    instance: Instance
    graph: TaskGraph
    roles: list[str]  # per task: prefill | decode | model | cpu
    dropped: list[Dropped] = field(default_factory=list)
    unplaceable: dict[int, str] = field(default_factory=dict)  # task -> why no class of the fleet can run it


def build_instance(problem: Problem, graph: TaskGraph, model: CostModel) -> AgentInstance:
    classes = {}
    for fleet_class in problem.fleet.classes:
        profile = model.profile(fleet_class.device)
        classes[profile.name] = DeviceClass(
            profile.name, problem.fleet.pricebook.usd_per_hour(profile.name, profile.tdp_w, profile.cores),
            pooled=profile.kind == "cpu", max_count=fleet_class.max_count, backend=profile.backend)
    builder = _Options(problem, graph, model, classes)
    return builder.build()


class _Options:
    def __init__(self, problem: Problem, graph: TaskGraph, model: CostModel, classes: dict[str, DeviceClass]):
        self.problem, self.graph, self.model, self.classes = problem, graph, model, classes
        self.options: list[Option] = []
        self.result = AgentInstance(Instance([t.label for t in graph.tasks], [], [], classes), graph, [])
        self._timed = lru_cache(maxsize=None)(self._phase_seconds)

    def build(self) -> AgentInstance:
        for index, task in enumerate(self.graph.tasks):
            role = _role(task.op)
            self.result.roles.append(role)
            before = len(self.options)
            for device_class in self.classes.values():
                self._add(index, role, device_class)
            if len(self.options) == before and not any(d.task == index for d in self.result.dropped):
                self.result.unplaceable[index] = self._why_unplaceable(index, role)
        edges, conflicts = self._edges()
        self.result.instance = Instance(
            [t.label for t in self.graph.tasks], self.options, edges, self.classes,
            sla_s=self.sla_s, slack_penalty=self.problem.slack_penalty_per_s, conflicts=conflicts)
        return self.result

    @property
    def sla_s(self) -> float | None:
        if self.problem.e2e_s is not None:
            return self.problem.e2e_s
        return self.graph.sla_ms / 1000 if self.graph.sla_ms else None

    # ---------------------------------------------------------------- options per task and class

    def _add(self, index: int, role: str, device_class: DeviceClass) -> None:
        task = self.graph.tasks[index]
        profile = self.model.profile(device_class.name)
        is_cpu = profile.kind == "cpu"
        if role == "cpu":
            if is_cpu:
                latency = task.attrs.get("latency_ms", 0.0) / 1000 + CPU_WORK_S
                self.options.append(self._make(index, device_class, 1, 1, Timing(latency, CPU_WORK_S)))
            return
        spec = card(task.attrs[MODEL_OPS.get(task.op, "model")])
        dtype = task.attrs.get("dtype") or spec.default_dtype
        if not _computes(profile, dtype):
            return  # e.g. an fp32 model on Gaudi: that class cannot run it
        tps = [1] if is_cpu or role == "model" else [tp for tp in self.problem.search["tp"] if spec.num_heads % tp == 0]
        batches = self.problem.search[{"prefill": "prefill_batch", "decode": "decode_batch"}.get(role, "model_batch")]
        tokens_in, tokens_out = self._tokens(task)
        kept: list[tuple[int, Option]] = []
        for tp in tps:
            for batch in batches:
                context = tokens_in + (tokens_out if role == "decode" else 0)
                memory = memory_use(spec, profile.memory_gb, dtype, tp, batch, max(context, 1), max(tokens_in, 1))
                timing = self._timing(role, spec, dtype, profile.name, tp, batch, tokens_in, tokens_out)
                devices = self._dedicated(task.executions, timing.busy_s, tp)
                cost = devices * device_class.usd_per_hour
                if not memory.fits:
                    self._drop(index, profile.name, tp, batch, "memory", memory.total_gb, memory.usable_gb, cost)
                elif role == "prefill" and self.problem.ttft_s and timing.latency_s > self.problem.ttft_s:
                    self._drop(index, profile.name, tp, batch, "ttft", timing.latency_s, self.problem.ttft_s, cost)
                elif role == "decode" and self.problem.tbt_s and timing.tbt_s > self.problem.tbt_s:
                    self._drop(index, profile.name, tp, batch, "tbt", timing.tbt_s, self.problem.tbt_s, cost)
                elif batch > max(min(batches), in_flight := self.problem.rate_rps * task.executions * timing.latency_s):
                    self._drop(index, profile.name, tp, batch, "occupancy", in_flight, batch, cost)
                else:
                    kept.append((tp, self._make(index, device_class, tp, batch, timing)))
        for tp, option in kept:  # drop options another of the same TP degree beats on both latency and devices
            if not any(o is not option and t == tp and o.latency_s <= option.latency_s and o.devices <= option.devices
                       and o.demand <= option.demand and (o.latency_s, o.devices, o.demand) != (option.latency_s, option.devices, option.demand)
                       for t, o in kept):
                self.options.append(option)


    def _make(self, index: int, device_class: DeviceClass, tp: int, batch: int, timing: Timing) -> Option:
        task = self.graph.tasks[index]
        if device_class.pooled:
            demand = self.problem.rate_rps * task.executions * timing.busy_s / self.problem.max_utilisation
            return Option(index, device_class.name, task.executions * timing.latency_s, demand=demand, tp=tp,
                          batch=batch, detail=timing)
        return Option(index, device_class.name, task.executions * timing.latency_s,
                      devices=self._dedicated(task.executions, timing.busy_s, tp), tp=tp, batch=batch, detail=timing)

    def _dedicated(self, executions: float, busy_s: float, tp: int) -> int:
        """Devices for replica groups of `tp` that keep up with the offered rate at the utilisation cap."""
        return tp * replicas_for(self.problem.rate_rps, executions, busy_s, tp, self.problem.max_utilisation)

    def _drop(self, index, device, tp, batch, constraint, value, limit, cost) -> None:
        self.result.dropped.append(Dropped(index, device, tp, batch, constraint, value, limit, cost))

    def _tokens(self, task) -> tuple[int, int]:
        attrs = dict(task.attrs)
        base = task.label.rpartition(".")[0] or task.label
        if task.op in LLM_OPS and (self.problem.steps is None or base in self.problem.steps):
            for key in ("input_tokens", "output_tokens"):
                if getattr(self.problem, key) is not None:
                    attrs[key] = getattr(self.problem, key)
        default = MODEL_TOKENS.get(task.op, 1)
        tokens_in = _mean_tokens(attrs.get("input_tokens", default))
        tokens_out = _mean_tokens(attrs.get("output_tokens", MODEL_TOKENS["audio.stt"] if task.op == "audio.stt" else 1))
        return tokens_in, tokens_out

    def _timing(self, role, spec, dtype, device, tp, batch, tokens_in, tokens_out) -> Timing:
        if role == "prefill":
            seconds = self._timed(spec.name, dtype, device, tp, batch, "prefill", tokens_in)
            return Timing(seconds, seconds * tp / batch, ttft_s=seconds, tokens_in=tokens_in)
        if role == "decode":
            step = self._timed(spec.name, dtype, device, tp, batch, "decode", tokens_in + tokens_out // 2)
            steps = max(tokens_out - 1, 1)  # the first token comes out of the prefill
            return Timing(step * steps, step * steps * tp / batch, tbt_s=step, tokens_in=tokens_in, tokens_out=tokens_out)
        seconds = self._timed(spec.name, dtype, device, tp, batch, "prefill", tokens_in)
        if spec.generative:  # speech to text: encode the audio, then generate the transcript
            seconds = self._timed(spec.name, dtype, device, tp, batch, "prefill", 1)
            seconds += tokens_out * self._timed(spec.name, dtype, device, tp, batch, "decode", tokens_out // 2)
        return Timing(seconds, seconds * tp / batch)

    def _phase_seconds(self, model_name, dtype, device, tp, batch, phase, tokens) -> float:
        spec = card(model_name)
        make = prefill_kernels if phase == "prefill" else decode_kernels
        return phase_time(self.model, device, make(spec, tokens, batch=batch, dtype=dtype, tp=tp), dtype, tp).seconds

    def _why_unplaceable(self, index: int, role: str) -> str:
        task = self.graph.tasks[index]
        names = ", ".join(self.classes)
        if role == "cpu":
            return (f"op {task.label!r} ({task.op}) runs on a CPU class, and fleet {self.problem.fleet.name!r} has "
                    f"none (classes: {names}); add one, e.g. epyc-9654")
        return f"op {task.label!r} ({task.op}) has no option on any class of fleet {self.problem.fleet.name!r} ({names})"

    # ---------------------------------------------------------------- edges

    def _edges(self) -> tuple[list[Edge], list[Conflict]]:
        by_task: dict[int, list[int]] = {}
        for o, option in enumerate(self.options):
            by_task.setdefault(option.task, []).append(o)
        edges, conflicts = [], []
        for dep in self.graph.dependencies:
            weight = min(self.graph.tasks[dep.src].executions, self.graph.tasks[dep.dst].executions)
            destinations = {self.options[o].device for o in by_task.get(dep.dst, [])}
            transfer = {}
            for o in by_task.get(dep.src, []):
                option = self.options[o]
                nbytes = self._kv_bytes(dep.src, option.tp) if dep.kv else dep.nbytes
                for device in destinations:
                    if nbytes and (dep.kv or device != option.device):
                        seconds = self.transfer_s(option.device, device, nbytes)
                        transfer[(o, device)] = weight * seconds
                        ttft = self.problem.ttft_s
                        if dep.kv and ttft and option.detail.latency_s + seconds > ttft:
                            conflicts.append(Conflict(o, dep.dst, device, f"TTFT {option.detail.latency_s + seconds:.3f} s > {ttft:g} s"))
            edges.append(Edge(dep.src, dep.dst, transfer, dep.kv or ""))
        return edges, conflicts

    def _kv_bytes(self, prefill: int, tp: int) -> float:
        """One request's KV cache, sent by each of the tp prefill devices in parallel (a 1/tp shard each)."""
        task = self.graph.tasks[prefill]
        spec = card(task.attrs["model"])
        tokens_in, _ = self._tokens(task)
        return tokens_in * spec.kv_bytes_per_token(task.attrs.get("dtype") or spec.default_dtype) / tp

    def transfer_s(self, src: str, dst: str, nbytes: float) -> float:
        link = self.problem.fleet.link(src, dst)
        if link is not None:
            return link.latency_s + nbytes / (link.gbps * 1e9)
        return self.model.transfer_time(src, dst, nbytes).seconds


def _role(op: str) -> str:
    if op == "llm.prefill":
        return "prefill"
    if op == "llm.decode":
        return "decode"
    return "model" if op in MODEL_OPS else "cpu"


def _computes(profile, dtype: str) -> bool:
    try:
        compute_dtype(profile, dtype)
    except HetagentError:
        return False
    return True


def _mean_tokens(value) -> int:
    if isinstance(value, dict):
        return max(1, round(value["mean"]))
    return max(1, int(value))
