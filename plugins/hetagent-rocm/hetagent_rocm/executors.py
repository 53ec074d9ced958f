"""The rocm backend's executor: the shared model-function executor on IREE's `hip` HAL driver, one worker per
GPU (pinned by the index `detect` reports); weights and KV caches stay on the GPU between steps."""

from __future__ import annotations

from hetagent.backend import iree, llm


class LLMExecutor(llm.LLMExecutor):
    driver = "hip"


def kernel_runner(artifact, symbol: str, device: str):
    return iree.kernel_runner(artifact, symbol, device, driver_name="hip")
