"""The gaudi backend's executor: the shared model-function executor on a torch device for the HPU.

A kernel's artifact is the saved `torch.export` program of its model function (`lowering.save_torch_graph`);
`HpuDevice` loads it with `lowering.load_for_hpu` (compiled for the HPU by the Habana `torch.compile` backend),
uploads the model's weights to the card once and keeps every result — the decode batch's KV cache included —
on the card between steps, moving to the host only what the executor reads (logits) and what leaves the device
(a prefill's cache, staged into the `spec/kv-format.md` layout). One worker per card: the worker sets
`HABANA_VISIBLE_MODULES` to its card before habana_frameworks is imported. habana_frameworks is imported here
and only here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hetagent.backend import llm
from hetagent.backend.devices import KernelDevice, device_runner, runner_context
from hetagent.errors import UnsupportedError

from hetagent_gaudi.lowering import load_for_hpu


class HpuDevice(KernelDevice):
    """The kernel device of a Gaudi worker: torch tensors on the HPU."""

    def __init__(self, context):
        if context.device_index is not None:
            os.environ.setdefault("HABANA_VISIBLE_MODULES", str(context.device_index))
        import habana_frameworks.torch  # noqa: F401  (registers the "hpu" device)
        import torch

        super().__init__(context)
        self.torch = torch
        self.hpu = torch.device("hpu")
        self.preload()

    def load(self, kernel):
        if not kernel.artifact.endswith(".pt2"):
            raise UnsupportedError(f"kernel @{kernel.symbol}: the gaudi executor runs saved torch graphs (.pt2), "
                                   f"not {Path(kernel.artifact).suffix}")
        compiled = load_for_hpu(kernel.artifact)
        return lambda *args: compiled(*(a if isinstance(a, self.torch.Tensor) else self.upload(a) for a in args))

    def upload(self, array):
        if isinstance(array, self.torch.Tensor):
            return array.to(self.hpu)
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.hpu)

    def to_host(self, array) -> np.ndarray:
        if isinstance(array, self.torch.Tensor):
            host = array.detach().to("cpu")
            return host.float().numpy() if host.is_floating_point() else host.numpy()
        return np.asarray(array)


class LLMExecutor(llm.LLMExecutor):
    def make_device(self, context):
        return HpuDevice(context)


def kernel_runner(artifact, symbol: str, device: str):
    """The conformance suite's kernel runner, on the first card."""
    return device_runner(HpuDevice(runner_context(device)), artifact, symbol)
