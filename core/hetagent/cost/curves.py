"""Efficiency curves of one device, as measured: `Calibration`, its JSON form, and curve interpolation.

A calibration is what a measurement campaign on one device produced: the peaks its efficiencies are fractions
of, the per-kernel floor time, and one curve per (op class, dtype). The curves and peaks travel together so a
calibration is self-contained: applying it to another device (extrapolation) needs nothing but that device's
specs. JSON schema: `spec/cost-model.md` section 4.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hetagent.errors import HetagentError
from hetagent.hardware.device import EfficiencyCurve

FORMAT_VERSION = 1

# Op classes and the resource their curve is a fraction of. Sizes are FLOPs for compute classes, bytes otherwise.
COMPUTE_CLASSES = ("gemm", "attention")
MEMORY_CLASSES = ("gemv", "gemm_memory", "norm", "rope", "activation", "add", "embedding")
LINK_CLASSES = ("allreduce", "p2p")
OP_CLASSES = COMPUTE_CLASSES + MEMORY_CLASSES + LINK_CLASSES

# Kernel kind (hetagent.models.kernels) -> (compute curve, memory curve).
CURVES_OF_KIND: dict[str, tuple[str | None, str]] = {
    "matmul": ("gemm", "gemm_memory"),  # a GEMM of few rows is bound by streaming its weights
    "matvec": ("gemm", "gemv"),
    "attention": ("attention", "gemv"),
    "norm": (None, "norm"),
    "rope": (None, "rope"),
    "activation": (None, "activation"),
    "add": (None, "add"),
    "embedding": (None, "embedding"),
}
# A class no calibration has falls back to these. Vidur's tables hold no attention kernels, so on GPUs attention
# is timed with the matmul curves: FlashAttention-class kernels run near GEMM efficiency when long (compute) and
# stream the KV cache like a GEMV when decoding (memory). `hetagent calibrate` measures attention on CPUs.
FALLBACK_CLASS = {"attention": "gemm", "gemv": "gemm_memory", "gemm_memory": "gemv"}
# Kernel kind -> link curve: collectives over the scale-up link, transfers between two devices.
LINK_CLASS_OF_KIND = {"allreduce": "allreduce", "transfer": "p2p"}
# The memory classes whose kernels a calibration also times with their operands in the last-level cache (a decode
# step of a model small enough to stay there): their curves of that regime are named `cached_class(op_class)`
# and are fractions of `Calibration.cache_gbs`. The other memory classes are small kernels, timed warm anyway.
CACHED_CLASSES = ("gemv", "gemm_memory")


def cached_class(op_class: str) -> str:
    """The name of `op_class`'s curve (and floor) measured with the operands in the last-level cache."""
    return f"{op_class}@cache"


# A multi-row GEMM does not switch from memory-bound to compute-bound at the ridge point: near it, neither the
# weight stream nor the tensor cores run flat out (tiles wait on loads, waves are partial), so its time follows
# the measured transition t = (c^p + m^p)^(1/p) of its compute and memory terms c and m; p is fitted on Vidur's
# H100/A100 GEMMs (benchmarks/bench_cost_vidur.py). Other kernels keep the roofline's max().
SMOOTH_KINDS = ("matmul",)
TRANSITION_P = 2.0


def combine(kind: str, compute_s: float, memory_s: float) -> float:
    """A kernel's body time from its compute and memory terms."""
    if kind in SMOOTH_KINDS and compute_s and memory_s:
        return (compute_s**TRANSITION_P + memory_s**TRANSITION_P) ** (1 / TRANSITION_P)
    return max(compute_s, memory_s)


def floor_class(kind: str) -> str:
    """The class whose floor time (`Calibration.fixed_s`) a kernel kind pays: its memory or link class."""
    return LINK_CLASS_OF_KIND.get(kind) or CURVES_OF_KIND[kind][1]


@dataclass(frozen=True)
class Calibration:
    """Efficiency curves measured on one device, with the figures they are relative to."""

    device: str  # the DeviceProfile it was measured on, or a reference id that is no profile ("reference-cpu")
    kind: str  # DeviceProfile.kind of the measured device: extrapolation stays within cpu / non-cpu
    peak_tflops: Mapping[str, float]  # the compute curves are fractions of these
    memory_bandwidth_gbs: float  # the memory curves are fractions of this
    link_gbs: float | None  # the link curves are fractions of this (per direction)
    fixed_s: Mapping[str, float]  # per memory/link class: the shortest such a kernel takes (launch, ramp, latency)
    curves: tuple[EfficiencyCurve, ...]
    source: str
    host: Mapping[str, Any] = field(default_factory=dict)  # host calibrations: which machine, when, how
    # per memory class of row-wise kernels: the rate one row streams at (GB/s), where the fit found it binding
    row_gbs: Mapping[str, float] = field(default_factory=dict)
    # the last-level cache: its size, and the rate its `cached_class` curves are fractions of (0: not measured)
    cache_bytes: float = 0.0
    cache_gbs: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "peak_tflops", dict(self.peak_tflops))
        object.__setattr__(self, "fixed_s", dict(self.fixed_s))
        object.__setattr__(self, "row_gbs", dict(self.row_gbs))
        object.__setattr__(self, "curves", tuple(self.curves))
        object.__setattr__(self, "host", dict(self.host))

    def curve(self, op_class: str, dtype: str | None = None) -> EfficiencyCurve | None:
        """The curve of `op_class`; for compute classes the one of `dtype` (None: any), for others any dtype."""
        for curve in self.curves:
            if curve.op_class == op_class and (dtype is None or op_class not in COMPUTE_CLASSES or curve.dtype == dtype):
                return curve
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "device": self.device,
            "kind": self.kind,
            "peak_tflops": self.peak_tflops,
            "memory_bandwidth_gbs": self.memory_bandwidth_gbs,
            "link_gbs": self.link_gbs,
            "fixed_s": self.fixed_s,
            "row_gbs": self.row_gbs,
            "cache_bytes": self.cache_bytes,
            "cache_gbs": self.cache_gbs,
            "source": self.source,
            "host": self.host,
            "curves": [
                {"op_class": c.op_class, "dtype": c.dtype, "source": c.source, "points": [list(p) for p in c.points]}
                for c in self.curves
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str) -> "Calibration":
        if data.get("format") != FORMAT_VERSION:
            raise HetagentError(f"{origin}: calibration format {data.get('format')!r}, expected {FORMAT_VERSION}")
        try:
            calibration = cls(
                device=data["device"],
                kind=data["kind"],
                peak_tflops=data["peak_tflops"],
                memory_bandwidth_gbs=float(data["memory_bandwidth_gbs"]),
                link_gbs=None if data["link_gbs"] is None else float(data["link_gbs"]),
                fixed_s={k: float(v) for k, v in data["fixed_s"].items()},
                row_gbs={k: float(v) for k, v in (data.get("row_gbs") or {}).items()},
                cache_bytes=float(data.get("cache_bytes") or 0.0),
                cache_gbs=float(data.get("cache_gbs") or 0.0),
                curves=tuple(
                    EfficiencyCurve(c["op_class"], c["dtype"], tuple(tuple(p) for p in c["points"]), c["source"])
                    for c in data["curves"]
                ),
                source=data["source"],
                host=data.get("host") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HetagentError(f"{origin}: malformed calibration ({type(exc).__name__}: {exc})") from None
        return calibration

    def save(self, path: Path) -> None:
        """Write the JSON form, one curve per line so a diff shows which curve moved."""
        data = self.to_dict()
        curves = data.pop("curves")
        head = json.dumps(data, indent=1)[:-2]
        lines = ",\n".join("  " + json.dumps(curve) for curve in curves)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'{head},\n "curves": [\n{lines}\n ]\n}}\n')

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            return cls.from_dict(json.loads(path.read_text()), str(path))
        except json.JSONDecodeError as exc:
            raise HetagentError(f"{path}: not valid JSON: {exc}") from None


def interpolate(curve: EfficiencyCurve, size: float) -> float:
    """Efficiency at `size`: linear in log-size between points, clamped to the end points outside them."""
    points = curve.points
    if size <= points[0][0]:
        return points[0][1]
    if size >= points[-1][0]:
        return points[-1][1]
    x = math.log(size)
    for (s0, e0), (s1, e1) in zip(points, points[1:]):
        if size <= s1:
            x0, x1 = math.log(s0), math.log(s1)
            return e0 + (e1 - e0) * (x - x0) / (x1 - x0)
    return points[-1][1]  # unreachable: size < the last point's size


def interpolate_seconds(points: tuple[tuple[float, float], ...], size: float) -> float:
    """A measured latency table (`CostTable.points`) at `size`: log-log between points; above the table time
    grows in proportion to size from the last point, below it the first point's time is the floor."""
    if size <= points[0][0]:
        return points[0][1]
    if size >= points[-1][0]:
        return points[-1][1] * size / points[-1][0]
    x = math.log(size)
    for (s0, t0), (s1, t1) in zip(points, points[1:]):
        if size <= s1:
            w = (x - math.log(s0)) / (math.log(s1) - math.log(s0))
            return math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0)))
    return points[-1][1]
