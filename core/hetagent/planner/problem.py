"""Reading problems and fleets (`spec/plan-format.md` sections 1-3): schema-checked, paths resolved, prices set.

A fleet's classes are device profiles (or, in a profiled problem, any names); each gets its $/hour from the
fleet's price book, where the fleet may add or override prices. Links between classes override the cost model's
default (`RooflineModel.transfer_time`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hetagent.agent.source import check, resolve
from hetagent.errors import HetagentError
from hetagent.files import read_json, read_text, read_toml
from hetagent.graphs import find_cycle
from hetagent.hardware.pricebook import DevicePrice, PriceBook, find_pricebook
from hetagent.plan.schema import validate

DEFAULT_MAX_UTILISATION = 0.8
DEFAULT_PERCENTILE = 99.0
DEFAULT_SEARCH = {
    "tp": [1, 2, 4, 8],
    "prefill_batch": [1, 2, 4, 8, 16, 32],
    "decode_batch": [1, 2, 4, 8, 16, 32, 64, 128, 256],
    "model_batch": [1, 4, 16],
}


@dataclass(frozen=True)
class FleetClass:
    device: str
    max_count: int | None = None


@dataclass(frozen=True)
class Link:
    gbps: float
    latency_s: float = 0.0


@dataclass(frozen=True)
class Fleet:
    name: str
    classes: tuple[FleetClass, ...]
    pricebook: PriceBook
    links: dict[frozenset, Link] = field(default_factory=dict)  # {a, b} (or {a}: within a class) -> link

    def link(self, a: str, b: str) -> Link | None:
        return self.links.get(frozenset((a, b)))


@dataclass(frozen=True)
class Trace:
    """Arrivals and lengths of a request trace: seconds from its start, prompt and output tokens."""

    path: str
    arrivals_s: tuple[float, ...]
    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]

    @property
    def duration_s(self) -> float:
        return self.arrivals_s[-1] - self.arrivals_s[0] if len(self.arrivals_s) > 1 else 1.0


@dataclass(frozen=True)
class Problem:
    name: str
    source: str  # the file it came from
    fleet: Fleet
    rate_rps: float
    max_utilisation: float
    e2e_s: float | None
    percentile: float
    ttft_s: float | None
    tbt_s: float | None
    slack_penalty_per_s: float | None  # $/hour per second over a limit (the file gives it per ms)
    search: dict[str, list[int]]
    agent: str | None = None  # what the loader takes: an .mlir path, file.py:NAME or module:NAME
    steps: tuple[str, ...] | None = None  # LLM labels the workload's tokens apply to (None: all)
    input_tokens: Any = None  # count or {mean, std, dist}: replaces the IR's for `steps`
    output_tokens: Any = None
    trace: Trace | None = None
    tasks: tuple[dict, ...] = ()  # the profiled formulation, as the file gives it

    @property
    def profiled(self) -> bool:
        return bool(self.tasks)

    def with_utilisation(self, cap: float) -> "Problem":
        return dataclasses.replace(self, max_utilisation=cap)

    def summary(self) -> dict[str, Any]:
        """The `problem` part of a plan."""
        sla = {k: v for k, v in (("e2e_s", self.e2e_s), ("percentile", self.percentile), ("ttft_s", self.ttft_s),
                                 ("tbt_s", self.tbt_s), ("slack_penalty_per_s", self.slack_penalty_per_s)) if v is not None}
        workload = {k: v for k, v in (("trace", self.trace.path if self.trace else None), ("steps", self.steps),
                                      ("input_tokens", self.input_tokens), ("output_tokens", self.output_tokens)) if v is not None}
        return {"name": self.name, "source": self.source, "agent": str(self.agent) if self.agent else None,
                "rate_rps": self.rate_rps,
                "max_utilisation": self.max_utilisation, "sla": sla, "workload": workload}


def read_document(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    return read_json(path, what) if path.suffix == ".json" else read_toml(path, what)


def load_problem(path: str | Path) -> Problem:
    path = Path(path)
    data = read_document(path, "problem")
    validate(data, "problem", str(path))
    base = path.parent
    fleet = load_fleet(base / data["fleet"]) if isinstance(data["fleet"], str) else fleet_from_dict(data["fleet"], base, f"{path}: fleet")
    workload, sla = data["workload"], data.get("sla", {})
    trace = load_trace(base / workload["trace"]) if "trace" in workload else None
    if "rate_rps" not in workload and trace is not None and trace.duration_s <= 0:
        raise HetagentError(f"{path}: the trace {trace.path} spans 0 s (all its requests arrive at once), so it gives "
                            "no rate: state workload.rate_rps")
    rate = workload.get("rate_rps") or (len(trace.arrivals_s) / trace.duration_s if trace else None)
    if rate is None:
        raise HetagentError(f"{path}: workload needs rate_rps (requests per second) or a trace to take it from")
    agent = resolve(data["agent"], base) if "agent" in data else None
    if agent is not None:
        try:
            check(agent)
        except HetagentError as exc:
            raise HetagentError(f"{path}: {exc}") from None
    if "tasks" in data:
        _check_profiled(data["tasks"], fleet, str(path))
    input_tokens, output_tokens = workload.get("input_tokens"), workload.get("output_tokens")
    if trace is not None:  # the trace's means stand for what the file does not state
        input_tokens = input_tokens or {"mean": _mean(trace.input_tokens), "dist": "constant"}
        output_tokens = output_tokens or {"mean": _mean(trace.output_tokens), "dist": "constant"}
    penalty = sla.get("slack_penalty")
    return Problem(
        name=data["name"], source=str(path), fleet=fleet, rate_rps=float(rate),
        max_utilisation=float(workload.get("max_utilisation", DEFAULT_MAX_UTILISATION)),
        e2e_s=sla["e2e_ms"] / 1000 if "e2e_ms" in sla else None,
        percentile=float(sla.get("percentile", DEFAULT_PERCENTILE)),
        ttft_s=sla["ttft_ms"] / 1000 if "ttft_ms" in sla else None,
        tbt_s=sla["tbt_ms"] / 1000 if "tbt_ms" in sla else None,
        slack_penalty_per_s=penalty * 1000 if penalty is not None else None,
        search={**DEFAULT_SEARCH, **{k: sorted(set(v)) for k, v in data.get("search", {}).items()}},
        agent=agent, steps=tuple(workload["steps"]) if "steps" in workload else None,
        input_tokens=input_tokens, output_tokens=output_tokens, trace=trace, tasks=tuple(data.get("tasks", ())),
    )


def load_fleet(path: str | Path) -> Fleet:
    path = Path(path)
    data = read_document(path, "fleet")
    return fleet_from_dict(data, path.parent, str(path))


def fleet_from_dict(data: dict[str, Any], base: Path, origin: str) -> Fleet:
    validate(data, "fleet", origin)
    book = find_pricebook(data.get("pricebook"), base)
    names = [c["device"] for c in data["classes"]]
    twice = {n for n in names if names.count(n) > 1}
    if twice:
        raise HetagentError(f"{origin}: class(es) {', '.join(sorted(twice))} listed twice")
    prices = dict(book.prices)
    for entry in data["classes"]:
        given = {k: entry[k] for k in ("purchase_usd", "operating_usd_per_hour", "cloud_usd_per_hour") if k in entry}
        if given:
            if "purchase_usd" not in given and "cloud_usd_per_hour" not in given:
                raise HetagentError(f"{origin}: class {entry['device']!r} gives a price without purchase_usd or "
                                    "cloud_usd_per_hour")
            prices[entry["device"]] = DevicePrice(entry["device"], source=entry.get("price_source", origin), **given)
    links = {}
    for entry in data.get("links", []):
        a, b = entry["between"]
        for end in (a, b):
            if end not in names:
                raise HetagentError(f"{origin}: link between {a!r} and {b!r}: {end!r} is not a class of this fleet "
                                    f"(classes: {', '.join(names)})")
        links[frozenset((a, b))] = Link(entry["gbps"], entry.get("latency_us", 0.0) / 1e6)
    return Fleet(data.get("name", origin), tuple(FleetClass(c["device"], c.get("max_count")) for c in data["classes"]),
                 dataclasses.replace(book, prices=prices), links)


MAX_TRACE_REQUESTS = 5_000_000
MAX_TRACE_TOKENS = 10_000_000


def load_trace(path: str | Path, *, limit_s: float | None = None) -> Trace:
    """An Azure LLM inference trace (TIMESTAMP, ContextTokens, GeneratedTokens) in arrival order; `limit_s`
    keeps its first seconds. Timestamps must not go backwards; token counts are whole numbers in
    [0, MAX_TRACE_TOKENS]; at most MAX_TRACE_REQUESTS rows."""
    from datetime import datetime

    path = Path(path)
    expected = "an Azure-format CSV: TIMESTAMP, ContextTokens, GeneratedTokens"
    text = read_text(path, f"trace ({expected})")
    stamps, inputs, outputs, row_number = [], [], [], 1
    try:
        for row_number, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
            if len(stamps) >= MAX_TRACE_REQUESTS:
                raise HetagentError(f"{path}: more than {MAX_TRACE_REQUESTS:,} requests, the limit for a trace")
            where = f"{path}:{row_number}"
            stamp = datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp()
            if stamps and stamp < stamps[-1]:
                raise HetagentError(f"{where}: TIMESTAMP {row['TIMESTAMP']} is earlier than the row before; a trace "
                                    "lists requests in arrival order")
            counts = []
            for column in ("ContextTokens", "GeneratedTokens"):
                count = int(row[column])
                if not 0 <= count <= MAX_TRACE_TOKENS:
                    raise HetagentError(f"{where}: {column} = {count}; it must be in [0, {MAX_TRACE_TOKENS:,}]")
                counts.append(max(1, count))
            stamps.append(stamp)
            inputs.append(counts[0])
            outputs.append(counts[1])
    except (KeyError, ValueError, TypeError, OverflowError, csv.Error) as exc:
        raise HetagentError(f"{path}: not {expected} (row {row_number}: {exc})") from None
    if not stamps:
        raise HetagentError(f"{path}: the trace has no requests")
    first = stamps[0]
    kept = [i for i in range(len(stamps)) if limit_s is None or stamps[i] - first <= limit_s]
    return Trace(str(path), tuple(stamps[i] - first for i in kept), tuple(inputs[i] for i in kept),
                 tuple(outputs[i] for i in kept))


def _mean(values) -> float:
    return sum(values) / len(values)


def _check_profiled(tasks: list[dict], fleet: Fleet, origin: str) -> None:
    names = [t["name"] for t in tasks]
    classes = {c.device for c in fleet.classes}
    for task in tasks:
        for before in task.get("after", []):
            if before not in names:
                raise HetagentError(f"{origin}: tasks.{task['name']}.after names {before!r}, which is no task "
                                    f"(tasks: {', '.join(names)})")
        for device in task["on"]:
            if device not in classes:
                raise HetagentError(f"{origin}: tasks.{task['name']}.on.{device}: {device!r} is not a class of the "
                                    f"fleet (classes: {', '.join(sorted(classes))})")
    if len(set(names)) != len(names):
        raise HetagentError(f"{origin}: task names must be unique; repeated: "
                            f"{', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    cycle = find_cycle(names, {t["name"]: t.get("after", []) for t in tasks})
    if cycle:
        raise HetagentError(f"{origin}: tasks wait for each other in a cycle through `after`: "
                            f"{' -> '.join(reversed(cycle))}; no task of it could ever start")
