"""The backend plugin contract: every hook a backend may implement (`spec/plugin-api.md`).

A backend is a module registered under the entry-point group `hetagent.backends`; the entry point's name is
the backend id. It implements hooks with `@hetagent.plugins.hookimpl`. Only `hetagent_backend_info` is
required. Hooks must be cheap and free of side effects, must not import a vendor SDK at module import time,
and return the frozen records of `hetagent.plugins.records`; the registry validates every record.
"""

from __future__ import annotations

import pluggy

from hetagent.hardware.device import DeviceProfile
from hetagent.plugins.records import BackendInfo, CostTable, Detection, ExecutorSpec, LoweringPipeline

PROJECT = "hetagent"
# MAJOR changes break backends (a mismatch is skipped at load); MINOR adds optional hooks or fields.
PLUGIN_API_VERSION = "1.1"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def hetagent_backend_info() -> BackendInfo:
    """Required. Name, version, vendor and the plugin-API version the backend was written against."""


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
