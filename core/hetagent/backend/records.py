"""The typed, frozen records that backend hooks return (`spec/plugin-api.md`).

Each record has a `validate()` that raises `RecordError` naming the offending fields; the registry calls it on
every record it receives, so a backend that breaks the contract is caught at load, not deep inside a run.
Heavy classes (executors, cost models) are named by "module:attribute" strings so the core never imports a
vendor SDK just by listing what a backend offers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import string
from dataclasses import dataclass, field
from typing import Any, Mapping

from hetagent.errors import RecordError
from hetagent.hardware.device import DTYPES, DeviceProfile
from hetagent.models.kernels import Kernel

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_OBJECT_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _check(problems: list[str], what: str) -> None:
    if problems:
        raise RecordError(f"{what}: " + "; ".join(problems))


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


@dataclass(frozen=True)
class BackendInfo:
    """Who a backend is. Returned by `hetagent_backend_info()`, the one hook every backend must implement."""

    name: str  # backend id; equals the entry-point name ("cpu")
    version: str  # the backend distribution's version
    plugin_api: str  # the plugin-API version the backend was written against ("2.2")
    vendor: str
    summary: str = ""
    # the profile of this node's host CPU when this backend provides it: that backend is the reference, which
    # runs every host op (tools, transforms) and is the default placement (exactly one loaded backend has it)
    host_device: str = ""

    def validate(self) -> None:
        problems = []
        if not _is_id(self.name):
            problems.append(f"name {self.name!r} must be a lowercase id ([a-z0-9._-])")
        if not isinstance(self.version, str) or not self.version:
            problems.append("version must be a non-empty string")
        if not isinstance(self.plugin_api, str) or not re.match(r"^\d+\.\d+$", self.plugin_api):
            problems.append(f"plugin_api {self.plugin_api!r} must look like 'MAJOR.MINOR'")
        if not isinstance(self.vendor, str) or not self.vendor:
            problems.append("vendor must be a non-empty string")
        if self.host_device and not _is_id(self.host_device):
            problems.append(f"host_device {self.host_device!r} must be empty or a profile id")
        _check(problems, f"backend info of {self.name!r}")


@dataclass(frozen=True)
class DetectedDevice:
    """One device present on this node, matched to a `DeviceProfile` by name."""

    profile: str
    index: int
    name: str  # what the driver or OS calls it
    memory_gb: float | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "details", dict(self.details))


@dataclass(frozen=True)
class Detection:
    """What `hetagent_detect()` found: devices, or why the backend cannot run here and what would fix it."""

    backend: str
    available: bool
    devices: tuple[DetectedDevice, ...] = ()
    reason: str = ""  # why unavailable: shown as "unavailable: <reason>"
    hint: str = ""  # what to install or do

    def __post_init__(self):
        object.__setattr__(self, "devices", tuple(self.devices))

    @classmethod
    def from_matches(
        cls, backend: str, devices: list[DetectedDevice], left_out: list[str], *, what: str, no_match_hint: str
    ) -> "Detection":
        """The detection for what a backend enumerated: devices matched to a profile, and labels of those that
        match none. Devices that fit no profile are never mapped to a made-up one: they are named in `hint`
        (some matched) or in `reason` (none matched, so the backend is unavailable)."""
        left = "; ".join(left_out)
        if not devices:
            return cls(backend, available=False, reason=f"no {what} matches a known profile: {left}", hint=no_match_hint)
        return cls(backend, available=True, devices=tuple(devices), hint=f"left out, no matching profile: {left}" if left else "")

    @property
    def status(self) -> str:
        if self.available:
            return f"available: {len(self.devices)} device(s)"
        return f"unavailable: {self.reason}"

    def validate(self) -> None:
        problems = []
        if not isinstance(self.available, bool):
            problems.append("available must be a bool")
        if self.available and not self.devices:
            problems.append("an available backend must list at least one device")
        if not self.available and not self.reason:
            problems.append("an unavailable backend must give a reason")
        for device in self.devices:
            if not isinstance(device, DetectedDevice) or not _is_id(device.profile):
                problems.append(f"device {device!r} must be a DetectedDevice naming a profile id")
        _check(problems, f"detection of backend {self.backend!r}")


@dataclass(frozen=True)
class Stage:
    """One named step of a lowering pipeline.

    `kind` is "mlir" (an MLIR pass-pipeline string run with the pass manager on the kernel's module), "iree"
    (flags for `iree-compile`, with `{option}` placeholders filled from the pipeline's target options; it turns
    the module into the artifact's bytes), or "python" (`action` is a "module:function" taking the module or
    the bytes so far and returning either).
    """

    name: str
    kind: str
    action: str

    KINDS = ("mlir", "iree", "python")


@dataclass(frozen=True)
class LoweringPipeline:
    """How a backend turns its partition of the agent IR into artifacts for one device kind."""

    backend: str
    device_kind: str  # DeviceProfile.kind or a profile name the pipeline is specific to
    stages: tuple[Stage, ...]
    target_options: Mapping[str, str] = field(default_factory=dict)
    version: str = "1"  # bump when a stage changes behaviour without changing its text
    artifact: str = "vmfb"  # file extension of what the last stage produces (IREE module: vmfb)

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "target_options", dict(self.target_options))

    def hash(self) -> str:
        """Stable digest of everything that changes the artifacts: the artifact-cache key's pipeline part."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def validate(self) -> None:
        problems = []
        if not self.stages:
            problems.append("a pipeline needs at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            problems.append(f"stage names must be unique, got {names}")
        for stage in self.stages:
            if stage.kind not in Stage.KINDS:
                problems.append(f"stage {stage.name!r} has kind {stage.kind!r}; valid: {', '.join(Stage.KINDS)}")
            if stage.kind == "python" and not _OBJECT_REF.match(stage.action or ""):
                problems.append(f"stage {stage.name!r}: a python action must be 'module:function'")
            if stage.kind == "iree":
                placeholders = {name for _, name, _, _ in string.Formatter().parse(stage.action) if name is not None}
                unknown = placeholders - set(self.target_options)
                if unknown:
                    problems.append(f"stage {stage.name!r} uses {', '.join(sorted(unknown))}, which are not target options")
        if not re.match(r"^[a-z0-9]+$", self.artifact or ""):
            problems.append(f"artifact {self.artifact!r} must be a file extension ([a-z0-9]+)")
        for key, value in self.target_options.items():
            if not isinstance(key, str) or not isinstance(value, str):
                problems.append(f"target option {key!r} must map a string to a string")
        _check(problems, f"lowering pipeline {self.backend}/{self.device_kind}")


@dataclass(frozen=True)
class ExecutorSpec:
    """An executor a backend offers: the granular ops it claims on which device kinds, and its class by name."""

    backend: str
    name: str
    ops: tuple[str, ...]  # granular op names it runs ("llm.prefill", ...)
    device_kinds: tuple[str, ...]  # profile names or kinds ("gpu")
    factory: str  # "module:Class", imported only when a worker starts

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "device_kinds", tuple(self.device_kinds))

    def validate(self) -> None:
        problems = []
        if not _is_id(self.name):
            problems.append(f"name {self.name!r} must be a lowercase id")
        if not self.ops:
            problems.append("ops must name at least one op")
        if not self.device_kinds:
            problems.append("device_kinds must name at least one device kind or profile")
        if not _OBJECT_REF.match(self.factory or ""):
            problems.append(f"factory {self.factory!r} must be 'module:Class'")
        _check(problems, f"executor {self.backend}/{self.name}")


@dataclass(frozen=True)
class CostTable:
    """Measured latencies a backend contributes for its own devices, preferred over the roofline model."""

    backend: str
    device: str  # DeviceProfile.name
    op_class: str  # "gemm", "gemv", "attention", "allreduce", ...
    dtype: str
    # (size, seconds) pairs sorted by size; size is FLOPs or bytes as the op class defines
    points: tuple[tuple[float, float], ...]
    source: str

    def __post_init__(self):
        object.__setattr__(self, "points", tuple(tuple(p) for p in self.points))

    def validate(self) -> None:
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        sizes = [p[0] for p in self.points]
        if not self.points or sizes != sorted(sizes) or any(len(p) != 2 or p[1] <= 0 for p in self.points):
            problems.append("points must be (size, seconds > 0) pairs sorted by size")
        if not self.source:
            problems.append("source must say where the measurements come from")
        _check(problems, f"cost table {self.backend}/{self.device}/{self.op_class}/{self.dtype}")


@dataclass(frozen=True)
class Measurement:
    """One measured kernel: what it did, in which dtype, on how many devices, and how long it took."""

    kernel: Kernel
    dtype: str
    seconds: float
    tp: int = 1  # participants of a collective (allreduce); 2 for a point-to-point transfer


@dataclass(frozen=True)
class PassMeasurement:
    """A whole pass (a small model's prefill or decode step) timed end to end: checks the fitted curves."""

    name: str
    kernels: tuple[Kernel, ...]  # every launch of the pass (`Kernel.count` repeats included)
    dtype: str
    seconds: float

    def __post_init__(self):
        object.__setattr__(self, "kernels", tuple(self.kernels))


@dataclass(frozen=True)
class CalibrationRun:
    """What `hetagent_calibrate` measured on one device of this node; the core fits curves from it."""

    backend: str
    device: str  # the profile measured
    kind: str  # the profile's kind ("cpu", "gpu", "accelerator")
    dtype: str
    measurements: tuple[Measurement, ...]
    checks: tuple[PassMeasurement, ...]
    source: str  # how it was measured ("hetagent calibrate --backend cpu on <host>")
    host: Mapping[str, Any] = field(default_factory=dict)  # which machine, when, library versions
    # the device's last-level cache in bytes, where measurements include kernels timed with their operands in it
    # (`Kernel.cached`); 0: none were
    cache_bytes: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "measurements", tuple(self.measurements))
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(self, "host", dict(self.host))

    def validate(self) -> None:
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if not self.measurements:
            problems.append("a calibration needs at least one measurement")
        if any(not (m.seconds > 0) for m in self.measurements) or any(not (c.seconds > 0) for c in self.checks):
            problems.append("every measured time must be > 0 seconds")
        if not (self.cache_bytes >= 0):
            problems.append(f"cache_bytes {self.cache_bytes!r} must be >= 0")
        if self.cache_bytes == 0 and any(m.kernel.cached for m in self.measurements):
            problems.append("measurements of cached kernels need the cache's size (cache_bytes)")
        _check(problems, f"calibration run {self.backend}/{self.device}")


# What each hook returns, and the record type the registry checks for.
RECORD_OF_HOOK: dict[str, type] = {
    "hetagent_backend_info": BackendInfo,
    "hetagent_device_profiles": DeviceProfile,
    "hetagent_detect": Detection,
    "hetagent_lowering_pipelines": LoweringPipeline,
    "hetagent_executors": ExecutorSpec,
    "hetagent_cost_models": CostTable,
    "hetagent_calibrate": CalibrationRun,
}


__all__ = [
    "BackendInfo",
    "DetectedDevice",
    "Detection",
    "Stage",
    "LoweringPipeline",
    "ExecutorSpec",
    "CostTable",
    "Measurement",
    "PassMeasurement",
    "CalibrationRun",
    "DeviceProfile",
    "RECORD_OF_HOOK",
]
