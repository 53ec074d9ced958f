"""hetagent backend `cpu`: the host CPU (detected and measured) and reference server-CPU profiles.

The reference backend: it provides this node's host device, runs every op (tools, transforms, search, speech,
model functions through IREE's `local-task` driver) and is the default placement. Importing this module loads no
numerical library and measures nothing.
"""

from __future__ import annotations

from hetagent.backend import Backend, ExecutorSpec

from hetagent_cpu import detect, lowering, profiles

__version__ = "0.1.0"
CPU = ("cpu",)


class CpuBackend(Backend):
    name = "cpu"
    vendor = "generic"
    plugin_api = "2.0"  # the API this backend is written against (a literal, so a mismatch shows)
    version = __version__
    summary = "Reference backend: the host CPU, plus Intel Xeon 6980P and AMD EPYC 9654 for planning"
    host_device = detect.PROFILE

    def profiles(self):
        return [profiles.host_profile(detect.host_cpu()), *profiles.REFERENCE_PROFILES]

    def detect(self):
        return detect.detect()

    def pipelines(self):
        return lowering.pipelines()

    def executors(self):
        return [
            ExecutorSpec(self.name, "iree-llm", ("llm.prefill", "llm.decode", "memory.embed"), CPU,
                         "hetagent_cpu.executors:LLMExecutor"),
            ExecutorSpec(self.name, "speech", ("audio.stt", "audio.tts"), CPU, "hetagent_cpu.speech:SpeechExecutor"),
            ExecutorSpec(self.name, "faiss-search", ("memory.search",), CPU, "hetagent_cpu.memory:SearchExecutor"),
            ExecutorSpec(self.name, "host-ops", ("tool.lookup", "tool.compute", "data.transform"), CPU,
                         "hetagent_cpu.host_ops:HostOpsExecutor"),
        ]

    def calibrate(self, device, quick, progress):
        if device != detect.PROFILE:
            return None  # only the CPU this process runs on can be timed
        from hetagent_cpu import calibrate

        return calibrate.run(self.name, device, "cpu", quick=quick, progress=progress)
