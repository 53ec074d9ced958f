"""hetagent backend `cuda`: NVIDIA GPU profiles, detection, IREE `cuda` lowering and executors.

Its rooms (profiles, detect, lowering, executors) are found by the `Backend` defaults; only who it is and which
ops its executor claims are written here. cuda-python is imported inside `detect.detect()` and IREE's cuda driver
inside a worker, never at import time, so listing this backend costs nothing without NVIDIA software.
"""

from hetagent.backend import MODEL_FUNCTION_OPS, Backend, ExecutorSpec

__version__ = "0.1.0"


class CudaBackend(Backend):
    name, vendor, plugin_api = "cuda", "nvidia", "2.2"  # plugin_api: a literal, so a major mismatch shows
    version, summary = __version__, "NVIDIA GPUs (A40, A100, H100, H200, B200, L40S, L4) through the CUDA driver"
    executor_specs = (ExecutorSpec(name, "iree-llm", MODEL_FUNCTION_OPS, ("gpu",), "hetagent_cuda.executors:LLMExecutor"),)
