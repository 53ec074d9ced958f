"""`DeviceProfile`: what the planner and the cost model know about one class of device.

Profiles are facts about hardware, never prices (those live in a `PriceBook`). Every number carries a source;
throughput figures are dense (no structured-sparsity doubling). Units are fixed so no caller has to guess:
TFLOPS (10^12 FLOP/s), GB (10^9 bytes), GB/s (10^9 bytes/s), W, and links in GB/s per direction.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from hetagent.dtypes import DTYPES
from hetagent.errors import RecordError

DEVICE_KINDS = ("gpu", "accelerator", "cpu")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Link:
    """An interconnect a device reaches its peers through. `gbps` is GB/s in one direction."""

    name: str
    gbps: float


@dataclass(frozen=True)
class EfficiencyCurve:
    """Achieved fraction of peak as a function of kernel size, for one (op class, dtype).

    `points` are (size, efficiency) pairs sorted by size; size is FLOPs for compute-bound classes and bytes for
    memory-bound ones. The cost model interpolates between points (log-size) and clamps outside them.
    """

    op_class: str
    dtype: str
    points: tuple[tuple[float, float], ...]
    source: str


@dataclass(frozen=True)
class DeviceProfile:
    name: str  # stable id used everywhere: plans, fleets, price books ("h100-sxm")
    display_name: str
    vendor: str  # nvidia | amd | intel | <cpu vendor> ...
    kind: str  # one of DEVICE_KINDS
    backend: str  # id of the backend that runs it ("cuda")
    peak_tflops: Mapping[str, float]  # dense peak per dtype
    memory_gb: float
    memory_bandwidth_gbs: float
    tdp_w: float
    sources: Mapping[str, str]  # field path -> where the number comes from
    scale_up: Link | None = None  # e.g. NVLink within a node
    scale_out: Link | None = None  # e.g. a RoCE/IB NIC between nodes
    ray_resource: str = ""  # custom Ray resource name standing for one device ("h100")
    ray_accelerator_type: str | None = None  # Ray's accelerator_type string, where Ray defines one
    arch: str | None = None  # compiler target: "sm_90", "gfx942", "x86-64-v4", "gaudi3"
    cores: int | None = None  # CPU cores (CPUs only)
    features: tuple[str, ...] = ()  # ISA / capability flags ("avx512f", "amx_bf16", ...)
    efficiency: tuple[EfficiencyCurve, ...] = ()
    notes: str = ""

    def __post_init__(self):
        object.__setattr__(self, "peak_tflops", dict(self.peak_tflops))
        object.__setattr__(self, "sources", dict(self.sources))
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "efficiency", tuple(self.efficiency))
        if not self.ray_resource:
            object.__setattr__(self, "ray_resource", self.name)

    def source_of(self, path: str) -> str | None:
        """The source of one figure: `peak_tflops.bf16` falls back to a source given for all `peak_tflops`."""
        if path in self.sources:
            return self.sources[path]
        head = path.split(".", 1)[0]
        return self.sources.get(head)

    def validate(self) -> None:
        """Raise `RecordError` naming every field that breaks the schema."""
        problems: list[str] = []
        if not isinstance(self.name, str) or not _ID.match(self.name):
            problems.append(f"name {self.name!r} must be a lowercase id ([a-z0-9._-])")
        for attr in ("display_name", "vendor", "backend"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                problems.append(f"{attr} must be a non-empty string")
        if self.kind not in DEVICE_KINDS:
            problems.append(f"kind {self.kind!r} must be one of {', '.join(DEVICE_KINDS)}")
        if not self.peak_tflops:
            problems.append("peak_tflops needs at least one dtype")
        for dtype, value in self.peak_tflops.items():
            if dtype not in DTYPES:
                problems.append(f"peak_tflops has unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
            if not _positive(value):
                problems.append(f"peak_tflops.{dtype} = {value!r} must be a positive number")
            elif not self.source_of(f"peak_tflops.{dtype}"):
                problems.append(f"peak_tflops.{dtype} has no source")
        for attr in ("memory_gb", "memory_bandwidth_gbs", "tdp_w"):
            value = getattr(self, attr)
            if not _positive(value):
                problems.append(f"{attr} = {value!r} must be a positive number")
            elif not self.source_of(attr):
                problems.append(f"{attr} has no source")
        for attr in ("scale_up", "scale_out"):
            link = getattr(self, attr)
            if link is None:
                continue
            if not isinstance(link, Link) or not _positive(link.gbps) or not link.name:
                problems.append(f"{attr} must be a Link with a name and a positive gbps")
            elif not self.source_of(attr):
                problems.append(f"{attr} has no source")
        if self.cores is not None and (not isinstance(self.cores, int) or self.cores <= 0):
            problems.append(f"cores = {self.cores!r} must be a positive integer")
        for curve in self.efficiency:
            sizes = [p[0] for p in curve.points]
            if (
                curve.dtype not in DTYPES
                or not curve.points
                or sizes != sorted(sizes)
                or any(not (0 < eff <= 1) for _, eff in curve.points)
                or not curve.source
            ):
                problems.append(
                    f"efficiency curve ({curve.op_class}, {curve.dtype}) needs a known dtype, a source and "
                    "points sorted by size with efficiencies in (0, 1]"
                )
        if problems:
            raise RecordError(f"device profile {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


__all__ = ["DTYPES", "DEVICE_KINDS", "Link", "EfficiencyCurve", "DeviceProfile"]
