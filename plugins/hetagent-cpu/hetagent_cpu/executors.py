"""The cpu backend's executors (`hetagent_executors`): which granular ops it runs on CPU devices.

The classes live in modules only worker processes import (`llm`, `speech`, `memory`, `host_ops`).
"""

from __future__ import annotations

from hetagent.plugins import ExecutorSpec

BACKEND = "cpu"
CPU = ("cpu",)


def specs() -> list[ExecutorSpec]:
    return [
        ExecutorSpec(BACKEND, "iree-llm", ("llm.prefill", "llm.decode", "memory.embed"), CPU,
                     "hetagent_cpu.llm:LLMExecutor"),
        ExecutorSpec(BACKEND, "speech", ("audio.stt", "audio.tts"), CPU, "hetagent_cpu.speech:SpeechExecutor"),
        ExecutorSpec(BACKEND, "faiss-search", ("memory.search",), CPU, "hetagent_cpu.memory:SearchExecutor"),
        ExecutorSpec(BACKEND, "host-ops", ("tool.lookup", "tool.compute", "data.transform"), CPU,
                     "hetagent_cpu.host_ops:HostOpsExecutor"),
    ]
