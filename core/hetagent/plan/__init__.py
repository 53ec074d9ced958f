"""The plan (`spec/plan-format.md`, `schemas/plan.schema.json`): where every op runs, and the planner's account of it.

One record for everyone: `hetagent plan` writes it, `hetagent compile --plan`, `hetagent run`/`serve`, the
simulator and the re-planner read it. `placements` and `default` are what the compiler applies; the rest are the
planner's figures (devices to provision, per-op timing, cost, the critical path, the constraints that bind, the
baselines it beat), present in a plan `hetagent plan` wrote (`format` set) and absent in a hand-written one.
Every file is read through one JSON Schema, with errors that name the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iree.compiler import ir

from hetagent.errors import HetagentError
from hetagent.files import read_json
from hetagent.plan.schema import validate

PLAN_FORMAT = "hetagent-plan/1"
DEFAULT_SOURCE = "the default placement (every op on the host CPU)"


@dataclass(frozen=True)
class Placement:
    """Where one op runs; `backend` "" means the device profile's own (and, in a profiled problem, no backend)."""

    device: str
    backend: str = ""
    replicas: int = 1
    tp: int = 1
    batch: int = 1
    partition: int | None = None  # on the host CPU: which of its core partitions (runtime.layout); None: any

    def as_attribute(self, context: ir.Context) -> ir.DictAttr:
        with context:
            i64 = ir.IntegerType.get_signless(64)
            partition = {} if self.partition is None else {"partition": ir.IntegerAttr.get(i64, self.partition)}
            return ir.DictAttr.get({
                "device": ir.StringAttr.get(self.device),
                "backend": ir.StringAttr.get(self.backend),
                "replicas": ir.IntegerAttr.get(i64, self.replicas),
                "tp": ir.IntegerAttr.get(i64, self.tp),
                "batch": ir.IntegerAttr.get(i64, self.batch),
                **partition,
            })

    @classmethod
    def of(cls, op) -> "Placement | None":
        """The `placement` attribute of an op (`spec/dialect.md`), or None before placing."""
        if "placement" not in op.attributes:
            return None
        attr = op.attributes["placement"]
        return cls(**{attr[i].name: attr[i].attr.value for i in range(len(attr))})


@dataclass(frozen=True)
class DeviceCount:
    count: int
    usd_per_hour_each: float
    pooled: bool  # CPU classes: their ops share the devices; others: dedicated replica groups per op
    utilisation: float
    backend: str = ""
    max_count: int | None = None


@dataclass(frozen=True)
class OpPlan:
    op: str
    device: str
    executions_per_request: float
    latency_s: float
    start_s: float
    busy_s: float
    devices: int
    ttft_s: float | None = None
    tbt_s: float | None = None
    critical: bool = False


@dataclass(frozen=True)
class PathStep:
    op: str
    kind: str  # compute | transfer
    seconds: float
    device: str | None = None


@dataclass(frozen=True)
class Binding:
    constraint: str  # e2e_sla | task_sla | ttft | tbt | memory | device_limit | utilisation | option_grid | occupancy
    detail: str
    op: str | None = None
    device: str | None = None
    value: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class Cost:
    usd_per_hour: float
    usd_per_request: float
    usd_per_m_tokens: float | None = None
    tokens_per_request: float | None = None
    slack_penalty_usd_per_hour: float | None = None


@dataclass(frozen=True)
class Latency:
    e2e_s: float
    critical_path: tuple[PathStep, ...]
    sla_s: float | None = None
    percentile: float | None = None
    slack_s: float | None = None


@dataclass(frozen=True)
class Baseline:
    name: str
    feasible: bool
    usd_per_hour: float | None = None
    usd_per_request: float | None = None
    e2e_s: float | None = None
    savings: float | None = None
    why: str | None = None


# the planner's figures: all present (a plan `hetagent plan` wrote) or all absent (a placement-only plan)
FIGURES = ("devices", "ops", "cost", "latency", "binding", "problem")


@dataclass
class Plan:
    placements: dict[str, Placement] = field(default_factory=dict)
    default: Placement | None = None  # None: this node's host device
    devices: dict[str, DeviceCount] = field(default_factory=dict)
    ops: dict[str, OpPlan] = field(default_factory=dict)
    cost: Cost | None = None
    latency: Latency | None = None
    binding: list[Binding] = field(default_factory=list)
    problem: dict[str, Any] | None = None
    baselines: dict[str, Baseline] = field(default_factory=dict)
    pareto: list[dict[str, Any]] = field(default_factory=list)
    solver: dict[str, Any] = field(default_factory=dict)
    simulation: dict[str, Any] | None = None
    source: str = field(default=DEFAULT_SOURCE, compare=False)  # where it came from, for errors; not written

    @property
    def planned(self) -> bool:
        """Whether the plan carries the planner's figures (it was written by `hetagent plan`)."""
        return self.problem is not None

    def require_figures(self, purpose: str) -> "Plan":
        if not self.planned:
            raise HetagentError(f"{self.source}: {purpose} needs a plan written by `hetagent plan` (with its ops, "
                                "cost, latency and problem); this one has placements only")
        return self

    def entry_for(self, label: str | None) -> tuple[str | None, Placement | None]:
        """The plan label covering `label` (itself, or the longest dotted prefix) and its placement."""
        while label:
            if label in self.placements:
                return label, self.placements[label]
            label = label.rpartition(".")[0]
        return None, None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "source"}
        if self.planned:
            data = {"format": PLAN_FORMAT, **data}
        kept = ("format", "placements", *FIGURES) if self.planned else ("placements",)
        return {key: value for key, value in data.items() if key in kept or value}

    def save(self, path: str | Path) -> None:
        try:  # NaN or inf is not JSON: a figure that is not finite is a bug to report, never a file to write
            text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        except ValueError as exc:
            raise HetagentError(f"{path}: the plan holds a number that is not finite ({exc}); not written") from None
        Path(path).write_text(text + "\n")

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "plan") -> "Plan":
        """A plan from its JSON form, checked against the schema: errors name `source` and each bad field."""
        validate(data, "plan", source)
        latency = data.get("latency")
        return cls(
            placements={label: Placement(**p) for label, p in data.get("placements", {}).items()},
            default=Placement(**data["default"]) if "default" in data else None,
            devices={name: DeviceCount(**d) for name, d in data.get("devices", {}).items()},
            ops={label: OpPlan(**o) for label, o in data.get("ops", {}).items()},
            cost=Cost(**data["cost"]) if "cost" in data else None,
            latency=None if latency is None else
            Latency(**{**latency, "critical_path": tuple(PathStep(**s) for s in latency["critical_path"])}),
            binding=[Binding(**b) for b in data.get("binding", [])],
            problem=data.get("problem"),
            baselines={k: Baseline(**b) for k, b in data.get("baselines", {}).items()},
            pareto=data.get("pareto", []),
            solver=data.get("solver", {}),
            simulation=data.get("simulation"),
            source=source,
        )

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        return cls.from_dict(read_json(path, "plan"), source=str(path))


def _plain(value: Any) -> Any:
    """Dataclasses to dicts without their None fields (the schema has no nulls where a field may be absent)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if getattr(value, f.name) is not None}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


__all__ = ["PLAN_FORMAT", "Placement", "Plan", "DeviceCount", "OpPlan", "PathStep", "Binding", "Cost", "Latency",
           "Baseline", "validate"]
