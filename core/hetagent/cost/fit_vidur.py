"""Fit the NVIDIA reference curves from Vidur's measured operator timings and ship them as package data.

    python -m hetagent.cost.fit_vidur ../shared/data/vidur [--out core/hetagent/cost/reference]

Writes one calibration per measured GPU (`h100-sxm.json`, `a100-80gb-sxm.json`). The installed package reads
those files, never the measurements, so it works without `../shared`. Peaks, bandwidth and link speed come from
the cuda backend's device profiles, so the curves are fractions of the same figures the planner uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from hetagent.cost.fit import Measurement, fit_calibration
from hetagent.cost.reference import REFERENCE_DIR
from hetagent.cost.vidur import DEVICES, load_link_measurements, load_operator_rows
from hetagent.hardware.device import DeviceProfile

SOURCE = "Vidur (microsoft/vidur 7d47513, MIT) operator profiles, fitted by hetagent.cost.fit_vidur"


def fit_devices(directory: str | Path, profiles: dict[str, DeviceProfile], *, exclude_model: str | None = None):
    """One calibration per Vidur GPU; `exclude_model` leaves one model's rows out (for held-out accuracy)."""
    rows = [r for r in load_operator_rows(directory) if r.model != exclude_model]
    links = load_link_measurements(directory)
    calibrations = []
    for device in DEVICES.values():
        measurements: list[Measurement] = [r.measurement for r in rows if r.device == device] + links.get(device, [])
        if not measurements:
            continue
        profile = profiles[device]
        calibrations.append(
            fit_calibration(
                device, profile.kind, measurements,
                peak_tflops=profile.peak_tflops,
                memory_bandwidth_gbs=profile.memory_bandwidth_gbs,
                link_gbs=profile.scale_up.gbps if profile.scale_up else None,
                source=SOURCE,
            )
        )
    return calibrations


def main(argv: Sequence[str] | None = None) -> int:
    from hetagent.backend.registry import Registry

    parser = argparse.ArgumentParser(prog="python -m hetagent.cost.fit_vidur", description=__doc__.split("\n")[0])
    parser.add_argument("directory", help="Vidur's profiling tables (../shared/data/vidur)")
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR, help="where to write the calibrations")
    args = parser.parse_args(argv)
    profiles = {p.name: p for p in Registry.load().device_profiles()}  # Vidur's GPUs, whichever backend has them
    for calibration in fit_devices(args.directory, profiles):
        path = args.out / f"{calibration.device}.json"
        calibration.save(path)
        floors = ", ".join(f"{k} {v * 1e6:.0f}" for k, v in sorted(calibration.fixed_s.items()))
        print(f"{path}: {len(calibration.curves)} curves; floors (µs): {floors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
