"""The plan record (`spec/plan-format.md`, `schemas/plan.schema.json`): what the planner decides and why.

`placements` and `default` are exactly what `hetagent compile --plan` and the runtime read; everything else is the
planner's account of the plan: devices to provision, per-op timing, cost, the critical path, the constraints that
bind, and the baselines it beat.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hetagent.errors import HetagentError
from hetagent.files import read_json
from hetagent.planner.schema import validate

PLAN_FORMAT = "hetagent-plan/1"


@dataclass(frozen=True)
class Placement:
    device: str
    backend: str = ""  # "" in a profiled problem, whose classes need not be device profiles
    replicas: int = 1
    tp: int = 1
    batch: int = 1


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
    constraint: str  # e2e_sla | task_sla | ttft | tbt | memory | device_limit | utilisation | option_grid
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


@dataclass
class Plan:
    placements: dict[str, Placement]
    default: Placement
    devices: dict[str, DeviceCount]
    ops: dict[str, OpPlan]
    cost: Cost
    latency: Latency
    binding: list[Binding]
    problem: dict[str, Any]
    baselines: dict[str, Baseline] = field(default_factory=dict)
    pareto: list[dict[str, Any]] = field(default_factory=list)
    solver: dict[str, Any] = field(default_factory=dict)
    simulation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"format": PLAN_FORMAT, **{f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}}
        for optional in ("baselines", "pareto", "solver", "simulation"):
            if not data[optional]:
                del data[optional]
        return data

    def save(self, path: str | Path) -> None:
        try:  # NaN or inf is not JSON: a figure that is not finite is a bug to report, never a file to write
            text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        except ValueError as exc:
            raise HetagentError(f"{path}: the plan holds a number that is not finite ({exc}); not written") from None
        Path(path).write_text(text + "\n")

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "plan") -> "Plan":
        validate(data, "plan", origin)
        latency = data["latency"]
        return cls(
            placements={label: Placement(**p) for label, p in data["placements"].items()},
            default=Placement(**data["default"]),
            devices={name: DeviceCount(**d) for name, d in data["devices"].items()},
            ops={label: OpPlan(**o) for label, o in data["ops"].items()},
            cost=Cost(**data["cost"]),
            latency=Latency(**{**latency, "critical_path": tuple(PathStep(**s) for s in latency["critical_path"])}),
            binding=[Binding(**b) for b in data["binding"]],
            problem=data["problem"],
            baselines={k: Baseline(**b) for k, b in data.get("baselines", {}).items()},
            pareto=data.get("pareto", []),
            solver=data.get("solver", {}),
            simulation=data.get("simulation"),
        )

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        return cls.from_dict(read_json(path, "plan"), origin=str(path))


def _plain(value: Any) -> Any:
    """Dataclasses to dicts without their None fields (the schema has no nulls where a field may be absent)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if getattr(value, f.name) is not None}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
