"""`hetagent calibrate --backend B`: a backend times its kernels on this node, the core fits and checks curves.

The backend measures (its `calibrate` hook: kernels alone, and a few whole passes of a small model); the core
turns the kernel times into efficiency curves (`hetagent.cost.fit`) and predicts each whole pass from the fresh
curves, so the report says how well the fitted model explains what was measured. Efficiencies are fractions of
the best rate measured here (GEMM FLOP/s, streaming bytes/s) when that beats the profile's quick figures, so
no efficiency exceeds 1. The calibration is stored per backend and host (`hetagent.cost.store`) and every
later estimate for that device on this host uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hetagent.backend.records import CalibrationRun, Measurement
from hetagent.cost.curves import Calibration
from hetagent.cost.fit import fit_calibration
from hetagent.cost.phases import phase_time
from hetagent.cost.roofline import RooflineModel
from hetagent.cost.store import host_id, save_host_calibration
from hetagent.errors import HetagentError
from hetagent.hardware.machine_load import cores, load_average


@dataclass(frozen=True)
class Check:
    name: str
    measured_s: float
    predicted_s: float

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s


@dataclass(frozen=True)
class CalibrationReport:
    calibration: Calibration
    path: Path
    checks: tuple[Check, ...]
    measurements: tuple[Measurement, ...]  # what the curves were fitted to

    def to_dict(self) -> dict:
        return {
            "device": self.calibration.device,
            "path": str(self.path),
            "calibration": self.calibration.to_dict(),
            "checks": [{"name": c.name, "measured_s": c.measured_s, "predicted_s": c.predicted_s, "error": c.error}
                       for c in self.checks],
        }


def calibration_device(registry, backend: str) -> str:
    """What `backend` calibrates here: the host device if it provides it, else its first detected device."""
    info = registry.backend(backend).info
    if info and info.host_device:
        return info.host_device
    detection = next((d for d in registry.detect() if d.backend == backend), None)
    if detection is None or not detection.available:
        why = detection.reason if detection else "it detects no devices"
        raise HetagentError(f"--backend {backend}: no device of it to calibrate on this node ({why})")
    return detection.devices[0].profile


def calibrate(backend: str, *, quick: bool = False, progress: Callable[[int, int, str], None] | None = None,
              registry=None) -> CalibrationReport:
    from hetagent.backend.registry import Registry

    registry = registry or Registry.load([backend])
    device = calibration_device(registry, backend)
    load_start = load_average()
    run = registry.calibrate(backend, device, quick=quick, progress=progress)
    load = max(load_start, load_average())
    if run is None:
        raise HetagentError(f"--backend {backend}: the backend does not calibrate {device} (it implements no "
                            "`calibrate`); its devices use shipped or borrowed curves")
    profile = registry.profile(device)
    calibration = _fit(profile, run, load)
    path = save_host_calibration(backend, calibration)
    return CalibrationReport(calibration, path, _checks(profile, calibration, run), run.measurements)


def _fit(profile, run: CalibrationRun, load: float) -> Calibration:
    # Rates above the profile's quick figures: the best this host showed becomes the reference. The memory one is
    # the best a weight-streaming kernel (GEMV, GEMM) reached outside the cache (those timed in it have a reference
    # of their own, `cache_gbs`): a residual add over a few hundred KB in L2 ran at 80-120 GB/s there, and as the
    # reference it put the ridge point below a batch-8 decode GEMM, which then joined the compute fit and halved
    # the predicted speed of prefill GEMMs of the same FLOPs. Faster small kernels keep an efficiency of 1.
    measurements = run.measurements
    streamed = [m for m in measurements if not m.kernel.cached and m.kernel.kind in ("matmul", "matvec")]
    best_flops = max((m.kernel.flops / m.seconds for m in streamed if m.kernel.kind == "matmul"), default=0.0)
    best_bytes = max((m.kernel.bytes / m.seconds for m in streamed), default=0.0)
    peak = max(profile.peak_tflops.get(run.dtype, 0.0), best_flops / 1e12)
    bandwidth = max(profile.memory_bandwidth_gbs, best_bytes / 1e9)
    return fit_calibration(
        run.device, run.kind, measurements,
        peak_tflops={run.dtype: peak},
        memory_bandwidth_gbs=bandwidth,
        link_gbs=None,
        source=run.source,
        cache_bytes=run.cache_bytes,
        # the load it was made under: a calibration made while other processes competed is redone (planner.host)
        host={"host": host_id(), "device": profile.display_name, "cores": profile.cores, **run.host,
              "load_average": load, "usable_cores": cores()},
    )


def _checks(profile, calibration: Calibration, run: CalibrationRun) -> tuple[Check, ...]:
    """Each whole pass the backend timed, predicted from the fresh curves."""
    model = RooflineModel([profile], calibrations=[calibration])
    return tuple(Check(c.name, c.seconds, phase_time(model, run.device, list(c.kernels), c.dtype, 1).seconds)
                 for c in run.checks)
