"""Planning this host: its CPU partitions as device classes, its calibration as the cost model (`spec/runtime.md`,
"the default run").

The host's usable cores split into `count` equal partitions; partition i is the device class `<host>:<i>` (the
name of the worker that will run it), a profile derived from the host's with `cores = k`, and peak compute, memory
bandwidth and TDP scaled by k/N (N: the host's cores) — its curves are the host calibration's, scaled the same way.
Each class holds one device (`max_count = 1`), priced at k × the price book's per-core price of the host CPU.

`plan_host` first fixes the SLA the run holds itself to, before anything runs: the agent's own SLA where the fastest
plan's critical path (at a trickle of requests) times `HEADROOM` meets it on this host, else that product. Then it
finds the highest request rate whose plan still meets that SLA with every partition's load under the utilisation
cap (bisection over the rate; the planner sizes the load and picks the batch, never larger than the rate fills),
and plans at that rate. Each op's placement names its partition (`Placement.partition`), which `runtime.layout`
honours: a partition's worker runs the ops placed on it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.hardware.machine_load import is_quiet
from hetagent.hardware.pricebook import DevicePrice, PriceBook
from hetagent.plan import Placement, Plan
from hetagent.planner.milp import Infeasible, solve
from hetagent.planner.planner import NoPlan, build, make_plan
from hetagent.planner.problem import DEFAULT_PERCENTILE, DEFAULT_SEARCH, Fleet, FleetClass, Link, Problem

# The utilisation cap of the default run: open-loop (Poisson) arrivals queue behind each other well before a
# partition is saturated, so the planned rate leaves half of each partition idle on average.
MAX_UTILISATION = 0.5
# Where the agent's SLA is out of this host's reach, the run holds itself to the planned critical path times this:
# room for queueing at the planned rate and for the cost model's error.
HEADROOM = 3.0
NO_SLA_S = 1e6  # "no end-to-end limit" for the planner (its instance needs a number to plan without one)
KV_HANDOFF_S = 200e-6  # a KV hand-off between worker processes: store, notify, load (bench_runtime's round trip)
RATE_STEPS = 14  # bisection steps over the rate: within 2^-14 of the largest feasible rate's bracket (log space)
MIN_RATE = 1e-3  # requests/s: "a trickle", where no op queues and the plan is as fast as the host allows


@dataclass(frozen=True)
class HostPlan:
    plan: Plan
    partitions: int
    rate_rps: float
    sla_ms: float
    sla_rule: str  # how `sla_ms` was derived, in words
    plan_seconds: float
    calibration: str  # where the cost model's host curves came from (and how long calibrating took, if it ran)

    def as_json(self) -> dict:
        return {"partitions": self.partitions, "rate_rps": self.rate_rps, "sla_ms": self.sla_ms,
                "sla_rule": self.sla_rule, "plan_seconds": self.plan_seconds, "calibration": self.calibration,
                "plan": self.plan.to_dict()}


def partition_name(host: str, index: int) -> str:
    return f"{host}:{index}"


def partition_profiles(host_profile, count: int, cores: int) -> list:
    """The `count` partition classes of the host: `cores` usable cores split as the layout splits them."""
    sizes = [cores // count] * count
    sizes[-1] += cores - sum(sizes)
    return [partition_profile(host_profile, partition_name(host_profile.name, index), k, cores)
            for index, k in enumerate(sizes)]


def partition_profile(host_profile, name: str, k: int, cores: int):
    """A class of `k` of the host's cores (of `cores` usable when the profile does not say): peak, bandwidth and
    TDP scaled by k over the host's cores."""
    total = host_profile.cores or cores
    share = k / total
    return dataclasses.replace(
        host_profile, name=name, display_name=f"{host_profile.display_name} ({k} of {total} cores)", cores=k,
        peak_tflops={d: v * share for d, v in host_profile.peak_tflops.items()},
        memory_bandwidth_gbs=host_profile.memory_bandwidth_gbs * share, tdp_w=host_profile.tdp_w * share,
        notes=f"{name}: {host_profile.name}'s peak, bandwidth and TDP scaled by {k}/{total}")


def worker_model(registry, workers, cores: int):
    """The cost model a run's predictions are checked with, and the device each worker is timed as: a worker on
    some of the host's cores is a partition class of its core count (named as the worker), the others their
    device."""
    host = registry.host.device if registry.host else None
    partitions = [partition_profile(registry.profile(host), w.name, len(w.cores), cores)
                  for w in workers if host and w.device == host and w.cores]
    device_of = {w.name: w.device for w in workers} | {p.name: p.name for p in partitions}
    if not partitions:
        from hetagent.cost import RooflineModel

        return RooflineModel.from_registry(registry), device_of
    return partition_model(registry, partitions, calibrated=False), device_of


def partition_model(registry, profiles: list, *, calibrated: bool = True):
    """The roofline model with the partition classes added: each takes the host calibration, scaled like its
    profile. Without one (`calibrated` False) the classes are extrapolated like any uncalibrated device."""
    from hetagent.cost import RooflineModel
    from hetagent.cost.reference import reference_calibrations
    from hetagent.cost.store import host_calibrations

    host = registry.host.device
    calibrations = [*reference_calibrations(), *host_calibrations()]
    own = next((c for c in calibrations if c.device == host), None)
    if own is None and not calibrated:
        return RooflineModel([*registry.device_profiles(), *profiles], tables=registry.cost_models(),
                             calibrations=calibrations)
    if own is None:
        raise HetagentError(f"no calibration of {host} on this host: run `hetagent calibrate --backend "
                            f"{registry.host.backend} --quick`")
    host_profile = registry.profile(host)
    derived = []
    for profile in profiles:
        share = profile.cores / (host_profile.cores or profile.cores)
        # the last-level cache is shared: each partition gets its cores' share of it, and of its rate
        derived.append(dataclasses.replace(own, device=profile.name,
                                           peak_tflops={d: v * share for d, v in own.peak_tflops.items()},
                                           memory_bandwidth_gbs=own.memory_bandwidth_gbs * share,
                                           cache_bytes=own.cache_bytes * share, cache_gbs=own.cache_gbs * share))
    return RooflineModel([*registry.device_profiles(), *profiles], tables=registry.cost_models(),
                         calibrations=[*calibrations, *derived])


def partition_pricebook(book: PriceBook, host: str, profiles: list) -> PriceBook:
    """`book` with a price for each partition: its cores times the book's per-core price of `host`."""
    price = book.price_of(host)
    if price.cloud_usd_per_core_hour is None:
        raise HetagentError(f"price book {book.name!r} gives no per-core price for {host} (cloud_usd_per_core_hour)")
    prices = dict(book.prices)
    for p in profiles:
        prices[p.name] = DevicePrice(p.name, cloud_usd_per_hour=price.cloud_usd_per_core_hour * p.cores,
                                     source=f"{p.cores} x {price.source}")
    return dataclasses.replace(book, prices=prices)


def ensure_calibration(registry, progress=None) -> str:
    """The host calibration, made quietly with the backend's quick calibration if this host has none yet, or if
    the one it has is not to be trusted (`stale_calibration`). Says which it used and, where the one it made now
    was made under load, that its figures are noisy and the next run redoes it."""
    from hetagent.cost.calibrate import calibrate
    from hetagent.cost.store import calibration_path

    path = calibration_path(registry.host.backend)
    stale = stale_calibration(path)
    if path.is_file() and not stale:
        return f"host calibration {path}"
    start = time.monotonic()
    made = calibrate(registry.host.backend, quick=True, registry=registry, progress=progress).calibration.host
    said = f"host calibration {path} ({stale + ': ' if stale else ''}quick calibration made now in " \
           f"{time.monotonic() - start:.1f} s"
    if not is_quiet(made["load_average"], made["usable_cores"]):
        return (f"{said}; warning: made under load average {made['load_average']:.1f} on {made['usable_cores']} "
                "cores, its figures are noisy: the next run redoes it)")
    return said + ")"


def stale_calibration(path: Path) -> str | None:
    """Why the calibration at `path` is to be redone — made while the machine was not quiet, before calibrations
    recorded their load, or before they timed kernels in the cache — or None (absent or trusted)."""
    from hetagent.cost.curves import Calibration

    if not path.is_file():
        return None
    calibration = Calibration.load(path)
    host = calibration.host
    load = host.get("load_average")
    if load is None:
        return "the cached one recorded no load"
    if not is_quiet(load, host.get("usable_cores")):
        return f"the cached one was made under load average {load:.1f} on {host.get('usable_cores')} cores"
    if not calibration.cache_gbs:
        return "the cached one has no curves for models that stay in the cache (made by an older hetagent)"
    return None


def plan_host(agent: str | Path, *, registry, count: int, cores: int, pricebook: PriceBook,
              percentile: float = DEFAULT_PERCENTILE, calibration: str = "", model=None) -> HostPlan:
    """Plan `agent` (an .mlir file, stand-ins already substituted) on this host's `count` CPU partitions."""
    start = time.monotonic()
    host = registry.host.device
    profiles = partition_profiles(registry.profile(host), count, cores)
    model = model or partition_model(registry, profiles)
    book = partition_pricebook(pricebook, host, profiles)
    # KV caches between (and within) partitions go through shared memory: a copy at half the host's bandwidth (a
    # read and a write), after a hand-off of about KV_HANDOFF_S
    shm = Link(registry.profile(host).memory_bandwidth_gbs / 2, KV_HANDOFF_S)
    links = {frozenset((a.name, b.name)): shm for a in profiles for b in profiles}
    fleet = Fleet(f"this host, {count} CPU partitions", tuple(FleetClass(p.name, 1) for p in profiles), book, links)

    def problem(rate: float, e2e_s: float | None) -> Problem:
        return Problem(name=f"{Path(str(agent)).stem} on this host", source="hetagent run", fleet=fleet,
                       rate_rps=rate, max_utilisation=MAX_UTILISATION, e2e_s=e2e_s, percentile=percentile,
                       ttft_s=None, tbt_s=None, slack_penalty_per_s=None,
                       search={**DEFAULT_SEARCH, "tp": [1]}, agent=str(agent))

    def planned(rate: float, e2e_s: float | None) -> Plan | None:
        try:
            return make_plan(problem(rate, e2e_s), model, baselines=False)
        except NoPlan:
            return None

    # The SLA first, from the fastest plan at a trickle of requests (no queueing)
    built = build(problem(MIN_RATE, NO_SLA_S), model)
    try:
        fastest_s = solve(dataclasses.replace(built.instance, sla_s=None), minimise="latency").makespan_s
    except Infeasible:
        raise HetagentError(f"{agent}: no plan fits this host's {count} CPU partitions") from None
    sla_s, rule = derive_sla(fastest_s, built.graph.sla_ms / 1000 if built.graph.sla_ms else None)
    # then the highest rate whose plan still meets it with every partition under the utilisation cap
    rate = sustainable_rate(lambda r: planned(r, sla_s))
    if rate is None:
        raise HetagentError(f"{agent}: no plan meets {sla_s * 1000:.0f} ms on this host even at {MIN_RATE:g} requests/s")
    plan = with_partitions(planned(rate, sla_s), host)
    return HostPlan(plan, count, rate, sla_s * 1000, rule, time.monotonic() - start, calibration)


def derive_sla(fastest_s: float, agent_sla_s: float | None) -> tuple[float, str]:
    """The SLA a run holds itself to, and how it was derived: the agent's own where the fastest plan's critical
    path, with `HEADROOM`, meets it on this host, else `HEADROOM` times that critical path. A critical path that
    only just fits the agent's SLA leaves no room for queueing at the planned rate: the run would miss it."""
    needed = fastest_s * HEADROOM
    path = f"the fastest plan's critical path ({fastest_s * 1000:.0f} ms)"
    if agent_sla_s is not None and needed <= agent_sla_s:
        return agent_sla_s, (f"the agent's SLA of {agent_sla_s * 1000:.0f} ms: {HEADROOM:g} x {path} "
                             f"= {needed * 1000:.0f} ms meets it on this host")
    why = (f"the agent's SLA of {agent_sla_s * 1000:.0f} ms is out of this host's reach with that headroom"
           if agent_sla_s else "the agent states no SLA")
    return needed, f"{HEADROOM:g} x {path}: {why}"


def sustainable_rate(feasible, *, low: float = MIN_RATE, high: float = 1e3, steps: int = RATE_STEPS) -> float | None:
    """The largest rate in [low, high] at which `feasible(rate)` gives a plan (bisection in log space; feasibility
    falls with the rate), or None when even `low` has none."""
    if feasible(low) is None:
        return None
    if feasible(high) is not None:
        return high
    for _ in range(steps):
        middle = (low * high) ** 0.5
        if feasible(middle) is not None:
            low = middle
        else:
            high = middle
    return low


def with_partitions(plan: Plan, host: str) -> Plan:
    """The plan's partition classes as placements the compiler and runtime read: the host device, with the
    partition named (`Placement.partition`)."""

    def mapped(p: Placement | None) -> Placement | None:
        if p is None or not p.device.startswith(f"{host}:"):
            return p
        return dataclasses.replace(p, device=host, partition=int(p.device.rpartition(":")[2]))

    return dataclasses.replace(plan, placements={k: mapped(v) for k, v in plan.placements.items()},
                               default=mapped(plan.default))
