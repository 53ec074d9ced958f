"""The cuda backend's executor: the shared model-function executor on IREE's `cuda` HAL driver, one worker
per GPU (pinned by the UUID and index `detect` reports); weights and KV caches stay on the GPU between steps."""

from __future__ import annotations

from hetagent.backend import iree, llm


class LLMExecutor(llm.LLMExecutor):
    driver = "cuda"


def kernel_runner(artifact, symbol: str, device: str):
    return iree.kernel_runner(artifact, symbol, device, driver_name="cuda")
