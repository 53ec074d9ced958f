"""Serving efficiency per device: the records `hetagent.cost.vendor` fits to the vendors' published throughput, and
the table it shipped (`reference/serving-efficiency.toml`) that every `RooflineModel` applies by default."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from hetagent.cost.reference import REFERENCE_DIR
from hetagent.files import read_toml

EFFICIENCY_FILE = REFERENCE_DIR / "serving-efficiency.toml"


@dataclass(frozen=True)
class ServingEfficiency:
    """Fractions of the curve-given compute and memory rates a device reaches inside a serving engine."""

    device: str
    compute: float
    memory: float
    figures: int  # published figures fitted
    sources: tuple[str, ...]



@functools.cache
def shipped_serving_efficiency() -> tuple[ServingEfficiency, ...]:
    if not EFFICIENCY_FILE.exists():
        return ()
    data = read_toml(EFFICIENCY_FILE, "serving efficiency")
    return tuple(
        ServingEfficiency(name, float(v["compute"]), float(v["memory"]), int(v["figures"]), tuple(v["sources"]))
        for name, v in data.get("devices", {}).items()
    )
