"""hetagent backend `gaudi`: Intel Gaudi 3 profiles, detection, torch-graph lowering and the HPU executor.

Its rooms (profiles, detect, lowering, executors) are found by the `Backend` defaults; only who it is and which
ops its executor claims are written here. hl-smi and habana_frameworks are used inside `detect.detect()` and the
worker, never at import time, so listing this backend costs nothing without the Gaudi stack.
"""

from hetagent.backend import MODEL_FUNCTION_OPS, Backend, ExecutorSpec

__version__ = "0.1.0"


class GaudiBackend(Backend):
    name, vendor, plugin_api = "gaudi", "intel", "2.2"  # plugin_api: a literal, so a major mismatch shows
    version, summary = __version__, "Intel Gaudi 3 accelerators (OAM and PCIe) through hl-smi"
    executor_specs = (ExecutorSpec(name, "hpu-llm", MODEL_FUNCTION_OPS, ("accelerator",),
                                   "hetagent_gaudi.executors:LLMExecutor"),)
