"""hetagent backend `rocm`: AMD Instinct GPU profiles, detection, IREE `rocm` lowering and executors.

amd-smi / rocm-smi run inside `detect.detect()` and IREE's hip driver inside a worker, never at import time,
so listing this backend costs nothing on a machine without ROCm.
"""

from __future__ import annotations

from hetagent.backend import Backend, ExecutorSpec

from hetagent_rocm import detect, lowering, profiles

__version__ = "0.1.0"


class RocmBackend(Backend):
    name = "rocm"
    vendor = "amd"
    plugin_api = "2.0"  # the API this backend is written against (a literal, so a mismatch shows)
    version = __version__
    summary = "AMD Instinct GPUs (MI300X, MI325X) through amd-smi, rocm-smi or the KFD sysfs"

    def profiles(self):
        return list(profiles.PROFILES)

    def detect(self):
        return detect.detect()

    def pipelines(self):
        return lowering.pipelines()

    def executors(self):
        return [ExecutorSpec(self.name, "iree-llm", ("llm.prefill", "llm.decode", "memory.embed"), ("gpu",),
                             "hetagent_rocm.executors:LLMExecutor")]
