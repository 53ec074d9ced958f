"""Cost models: how long work takes on a device (`spec/cost-model.md`).

`CostModel` is the protocol the planner and the TCO study use; `RooflineModel` implements it with efficiency
curves fitted from measurements (shipped references, `hetagent calibrate`, backends' tables). `estimate_llm`
times serving a model (prefill, TTFT, time between tokens) and checks that it fits in memory.
"""

from hetagent.cost.curves import OP_CLASSES, Calibration
from hetagent.cost.phases import LLMEstimate, MemoryUse, estimate_llm, memory_use, require_some_fit
from hetagent.cost.model import CostModel, KernelTime
from hetagent.cost.roofline import RooflineModel, compute_dtype

__all__ = [
    "OP_CLASSES",
    "Calibration",
    "CostModel",
    "KernelTime",
    "LLMEstimate",
    "MemoryUse",
    "RooflineModel",
    "compute_dtype",
    "estimate_llm",
    "memory_use",
    "require_some_fit",
]
