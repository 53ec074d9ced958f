"""The one package a backend imports (`spec/plugin-api.md`): the contract and what every executor shares.

- the contract: `Backend` (subclass it), the hookspecs, the records, `PLUGIN_API_VERSION`; the registry the
  core uses to load backends (`registry`);
- the executor interface (`executor`: `Call`, `Outcome`, `WorkerContext`, `KernelRef`, `OneShotExecutor`) and
  the model-function executor shared by every device (`llm`), over a kernel device: the IREE execution layer,
  one class for every HAL driver (`iree`);
- what executors need around models and agents: the KV exchange format (`kv_format`), sampling and
  detokenizing (`text`), a model's tokenizer (`tokenizer`: a Hugging Face checkpoint's own, else bytes) and chat
  template (`chat_template`), weights (`weights`), tools (`tools`, `builtin_tools`), data transforms
  (`transforms`), memory stores (`stores`).

Submodules are imported where used; this module imports only the contract.
"""

from hetagent.backend.base import Backend
from hetagent.backend.executor import MODEL_FUNCTION_OPS
from hetagent.backend.hookspecs import PLUGIN_API_VERSION, hookimpl
from hetagent.backend.records import (
    BackendInfo,
    CalibrationRun,
    CostTable,
    DetectedDevice,
    Detection,
    ExecutorSpec,
    LoweringPipeline,
    Measurement,
    PassMeasurement,
    Stage,
)
from hetagent.backend.registry import ENTRY_POINT_GROUP, LoadedBackend, PluginWarning, Registry
from hetagent.hardware.device import DeviceProfile

__all__ = [
    "PLUGIN_API_VERSION",
    "hookimpl",
    "Backend",
    "MODEL_FUNCTION_OPS",
    "BackendInfo",
    "CalibrationRun",
    "CostTable",
    "DetectedDevice",
    "Detection",
    "DeviceProfile",
    "ExecutorSpec",
    "LoweringPipeline",
    "Measurement",
    "PassMeasurement",
    "Stage",
    "ENTRY_POINT_GROUP",
    "LoadedBackend",
    "PluginWarning",
    "Registry",
]
