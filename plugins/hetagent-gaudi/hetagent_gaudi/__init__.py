"""hetagent backend `gaudi`: Intel Gaudi 3 profiles, detection, torch-graph lowering and the HPU executor.

hl-smi and habana_frameworks are used inside `detect.detect()` and the worker, never at import time, so listing
this backend costs nothing on a machine without the Gaudi stack.
"""

from __future__ import annotations

from hetagent.backend import Backend, ExecutorSpec

from hetagent_gaudi import detect, lowering, profiles

__version__ = "0.1.0"


class GaudiBackend(Backend):
    name = "gaudi"
    vendor = "intel"
    plugin_api = "2.0"  # the API this backend is written against (a literal, so a mismatch shows)
    version = __version__
    summary = "Intel Gaudi 3 accelerators (OAM and PCIe) through hl-smi"

    def profiles(self):
        return list(profiles.PROFILES)

    def detect(self):
        return detect.detect()

    def pipelines(self):
        return lowering.pipelines()

    def executors(self):
        return [ExecutorSpec(self.name, "hpu-llm", ("llm.prefill", "llm.decode", "memory.embed"), ("accelerator",),
                             "hetagent_gaudi.executors:LLMExecutor")]
