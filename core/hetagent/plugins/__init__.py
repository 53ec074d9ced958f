"""The plugin contract: hookspecs, records and the registry (`spec/plugin-api.md`)."""

from hetagent.plugins.hookspecs import PLUGIN_API_VERSION, hookimpl
from hetagent.plugins.records import (
    BackendInfo,
    CostTable,
    DetectedDevice,
    Detection,
    ExecutorSpec,
    LoweringPipeline,
    Stage,
)
from hetagent.plugins.registry import ENTRY_POINT_GROUP, Backend, PluginWarning, Registry

__all__ = [
    "PLUGIN_API_VERSION",
    "hookimpl",
    "BackendInfo",
    "CostTable",
    "DetectedDevice",
    "Detection",
    "ExecutorSpec",
    "LoweringPipeline",
    "Stage",
    "ENTRY_POINT_GROUP",
    "Backend",
    "PluginWarning",
    "Registry",
]
