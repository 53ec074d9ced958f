"""hetagent backend `rocm`: AMD Instinct GPU profiles, detection, IREE `rocm` lowering and executors.

Its rooms (profiles, detect, lowering, executors) are found by the `Backend` defaults; only who it is and which
ops its executor claims are written here. amd-smi / rocm-smi run inside `detect.detect()` and IREE's hip driver
inside a worker, never at import time, so listing this backend costs nothing without ROCm.
"""

from hetagent.backend import MODEL_FUNCTION_OPS, Backend, ExecutorSpec

__version__ = "0.1.0"


class RocmBackend(Backend):
    name, vendor, plugin_api = "rocm", "amd", "2.2"  # plugin_api: a literal, so a major mismatch shows
    version, summary = __version__, "AMD Instinct GPUs (MI300X, MI325X) through amd-smi, rocm-smi or the KFD sysfs"
    executor_specs = (ExecutorSpec(name, "iree-llm", MODEL_FUNCTION_OPS, ("gpu",), "hetagent_rocm.executors:LLMExecutor"),)
