"""hetagent backend `cpu`: the host CPU (detected and measured) and reference server-CPU profiles.

The reference backend: it provides this node's host device, runs every op (tools, transforms, search, speech,
model functions through IREE's `local-task` driver) and is the default placement. Its detect and lowering rooms
are found by the `Backend` defaults. Importing this module loads no numerical library and measures nothing.
"""

from hetagent.backend import MODEL_FUNCTION_OPS, Backend, ExecutorSpec

from hetagent_cpu import detect, profiles

__version__ = "0.1.0"
CPU = ("cpu",)


class CpuBackend(Backend):
    name, vendor, plugin_api = "cpu", "generic", "2.2"  # plugin_api: a literal, so a major mismatch shows
    version, summary = __version__, "Reference backend: the host CPU, plus Intel Xeon 6980P and AMD EPYC 9654 for planning"
    host_device = detect.PROFILE
    executor_specs = (
        ExecutorSpec(name, "iree-llm", MODEL_FUNCTION_OPS, CPU, "hetagent_cpu.executors:LLMExecutor"),
        ExecutorSpec(name, "speech", ("audio.stt", "audio.tts"), CPU, "hetagent_cpu.speech:SpeechExecutor"),
        ExecutorSpec(name, "faiss-search", ("memory.search",), CPU, "hetagent_cpu.memory:SearchExecutor"),
        ExecutorSpec(name, "host-ops", ("tool.lookup", "tool.compute", "data.transform"), CPU,
                     "hetagent_cpu.host_ops:HostOpsExecutor"),
    )

    def profiles(self):
        return [profiles.host_profile(detect.host_cpu()), *profiles.REFERENCE_PROFILES]

    def calibrate(self, device, quick, progress):
        if device != self.host_device:
            return None  # only the CPU this process runs on can be timed
        from hetagent_cpu import calibrate

        return calibrate.run(self.name, device, "cpu", quick=quick, progress=progress)
