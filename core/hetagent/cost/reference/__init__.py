"""Calibrations shipped with hetagent: fitted NVIDIA curves (from Vidur's measurements) and a reference CPU.

Each `<device>.json` is a `Calibration` (`spec/cost-model.md` section 4). They are measured on the device they
name and are the starting points for extrapolating to every device without measurements of its own.
"""

from __future__ import annotations

import functools
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent


@functools.cache
def reference_calibrations() -> tuple:
    from hetagent.cost.curves import Calibration

    return tuple(Calibration.load(path) for path in sorted(REFERENCE_DIR.glob("*.json")))
