"""hetagent backend `cuda`: NVIDIA GPU profiles, detection, IREE `cuda` lowering and executors.

cuda-python is imported inside `detect.detect()` and IREE's cuda driver inside a worker, never at import time,
so listing this backend costs nothing on a machine without NVIDIA software.
"""

from __future__ import annotations

from hetagent.backend import Backend, ExecutorSpec

from hetagent_cuda import detect, lowering, profiles

__version__ = "0.1.0"


class CudaBackend(Backend):
    name = "cuda"
    vendor = "nvidia"
    plugin_api = "2.0"  # the API this backend is written against (a literal, so a mismatch shows)
    version = __version__
    summary = "NVIDIA GPUs (A40, A100, H100, H200, B200, L40S, L4) through the CUDA driver"

    def profiles(self):
        return list(profiles.PROFILES)

    def detect(self):
        return detect.detect()

    def pipelines(self):
        return lowering.pipelines()

    def executors(self):
        return [ExecutorSpec(self.name, "iree-llm", ("llm.prefill", "llm.decode", "memory.embed"), ("gpu",),
                             "hetagent_cuda.executors:LLMExecutor")]
