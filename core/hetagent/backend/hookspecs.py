"""The backend plugin contract: every hook a backend implements (`spec/plugin-api.md`).

A backend is a `hetagent.backend.Backend` subclass registered under the entry-point group `hetagent.backends`
(the entry point's name is the backend id). `Backend` implements every hook below by calling a plain method
a subclass overrides (`profiles`, `detect`, `pipelines`, `executors`, `cost_tables`, `calibrate`), so a backend
writes only what differs from the defaults. Hooks must be cheap and free of side effects, must not import a
vendor SDK at module import time, and return the frozen records of `hetagent.backend.records`; the registry
validates every record.
"""

from __future__ import annotations

from typing import Callable

import pluggy

from hetagent.backend.records import (
    BackendInfo,
    CalibrationRun,
    CostTable,
    Detection,
    ExecutorSpec,
    LoweringPipeline,
)
from hetagent.hardware.device import DeviceProfile

PROJECT = "hetagent"
# MAJOR changes break backends (a mismatch is skipped at load); MINOR adds optional hooks or fields.
PLUGIN_API_VERSION = "2.2"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def hetagent_backend_info() -> BackendInfo:
    """Required. Name, version, vendor, the plugin-API version the backend was written against, and whether it
    provides this node's host device (the reference backend)."""


@hookspec
def hetagent_device_profiles() -> list[DeviceProfile]:
    """The device classes this backend knows, used for planning whether or not the hardware is present."""


@hookspec
def hetagent_detect() -> Detection:
    """The devices present on this node, each matched to a profile, or unavailable with a reason and a hint.

    Cheap, side-effect free and re-entrant: it may be called many times, from any process.
    """


@hookspec
def hetagent_lowering_pipelines() -> list[LoweringPipeline]:
    """Per device kind, the ordered named stages that turn an IR partition into artifacts."""


@hookspec
def hetagent_executors() -> list[ExecutorSpec]:
    """The executors this backend offers and the granular ops each claims."""


@hookspec
def hetagent_cost_models() -> list[CostTable]:
    """Optional: measured latency tables for this backend's devices, preferred over the roofline model."""


@hookspec
def hetagent_calibrate(device: str, quick: bool, progress: Callable[[int, int, str], None] | None) -> CalibrationRun | None:
    """Optional: time this backend's kernels on `device` (present on this node) for `hetagent calibrate`; the
    core fits the efficiency curves from the measurements and checks them against the whole passes. None:
    the backend cannot calibrate that device."""
