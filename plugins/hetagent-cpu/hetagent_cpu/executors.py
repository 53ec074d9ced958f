"""The cpu backend's model-function executor: the shared one on IREE's `local-task` driver (the host's task
system, one thread group per pinned core), and the conformance suite's kernel runner (`local-sync`)."""

from __future__ import annotations

from hetagent.backend import iree, llm


class LLMExecutor(llm.LLMExecutor):
    driver = "local-task"


def kernel_runner(artifact, symbol: str, device: str):
    return iree.kernel_runner(artifact, symbol, device, driver_name="local-sync")
