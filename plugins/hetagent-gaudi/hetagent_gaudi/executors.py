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
from hetagent.backend.weights import load_weights, prepare_weights
from hetagent.errors import UnsupportedError
from hetagent.models.catalog import card

from hetagent_gaudi.lowering import load_for_hpu


class HpuDevice:
    """The kernel device of a Gaudi worker: the same shape as `hetagent.backend.iree.IreeDevice`."""

    def __init__(self, context):
        if context.device_index is not None:
            os.environ.setdefault("HABANA_VISIBLE_MODULES", str(context.device_index))
        import habana_frameworks.torch  # noqa: F401  (registers the "hpu" device)
        import torch

        self.torch, self.context = torch, context
        self.hpu = torch.device("hpu")
        self._functions: dict[str, object] = {}
        self._weights: dict[tuple[str, str], list] = {}
        for kernel in context.kernels:
            self.function(kernel)
            self.weights(kernel)

    def card(self, kernel):
        return card(kernel.function["model"])

    def upload(self, array):
        if isinstance(array, self.torch.Tensor):
            return array.to(self.hpu)
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.hpu)

    def to_host(self, array) -> np.ndarray:
        if isinstance(array, self.torch.Tensor):
            return array.detach().to("cpu").float().numpy() if array.is_floating_point() else array.to("cpu").numpy()
        return np.asarray(array)

    def function(self, kernel):
        if not kernel.artifact.endswith(".pt2"):
            raise UnsupportedError(f"kernel @{kernel.symbol}: the gaudi executor runs saved torch graphs (.pt2), "
                                   f"not {Path(kernel.artifact).suffix}")
        if kernel.symbol not in self._functions:
            compiled = load_for_hpu(kernel.artifact)

            def call(*args, compiled=compiled):
                return compiled(*(a if isinstance(a, self.torch.Tensor) else self.upload(a) for a in args))

            self._functions[kernel.symbol] = call
        return self._functions[kernel.symbol]

    def weights(self, kernel) -> list:
        model, dtype = kernel.function["model"], kernel.function["dtype"]
        if (model, dtype) not in self._weights:
            model_dir = Path(self.context.model_dir) if self.context.model_dir else None
            source = prepare_weights(model, dtype, model_dir=model_dir, cache_dir=Path(self.context.cache_dir))
            arrays = load_weights(model, source)
            self._weights[(model, dtype)] = [self.upload(arrays[name]) for name in kernel.weights]
        return self._weights[(model, dtype)]


class LLMExecutor(llm.LLMExecutor):
    def make_device(self, context):
        return HpuDevice(context)


def kernel_runner(artifact, symbol: str, device: str):
    """The conformance suite's kernel runner on the first card."""
    import habana_frameworks.torch  # noqa: F401
    import torch

    compiled = load_for_hpu(artifact)
    hpu = torch.device("hpu")

    def run(*arrays):
        results = compiled(*(torch.from_numpy(np.ascontiguousarray(a)).to(hpu) for a in arrays))
        results = results if isinstance(results, (tuple, list)) else (results,)
        return tuple(r.detach().to("cpu").float().numpy() if r.is_floating_point() else r.to("cpu").numpy()
                     for r in results)

    return run
