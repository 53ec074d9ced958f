"""Kernel devices: what the shared model-function executor (`hetagent.backend.llm`) runs kernels on.

A kernel device loads a compiled kernel once (`function`), uploads a model's weights once and keeps them
resident (`weights`), and moves arrays in and out (`upload`, `to_host`). `KernelDevice` holds what every one
shares — the caches, where weights come from, the model card — and a device class writes only `load`,
`upload` and `to_host`: `hetagent.backend.iree.IreeDevice` for every IREE HAL driver, hetagent-gaudi's
`HpuDevice` for torch graphs on the HPU.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from hetagent.backend.executor import KernelRef, WorkerContext
from hetagent.backend.weights import load_weights, prepare_weights
from hetagent.models.catalog import card, use_model_dir


class KernelDevice(ABC):
    def __init__(self, context: WorkerContext):
        self.context = context
        if context.model_dir:
            use_model_dir(context.model_dir)  # checkpoints named after their directories (the kernels' models)
        self._functions: dict[str, object] = {}
        self._weights: dict[tuple[str, str], list] = {}

    def preload(self) -> None:
        """Load every kernel of the worker and its weights before the first call, so no request pays for it."""
        for kernel in self.context.kernels:
            self.function(kernel)
            self.weights(kernel)

    # what a device class writes
    @abstractmethod
    def load(self, kernel: KernelRef):
        """The kernel's artifact as a callable taking host or device arrays."""

    @abstractmethod
    def upload(self, array: np.ndarray):
        """A host array on the device."""

    @abstractmethod
    def to_host(self, array) -> np.ndarray:
        """A device (or host) array as a numpy array."""

    # shared
    def card(self, kernel: KernelRef):
        return card(kernel.function["model"])

    def function(self, kernel: KernelRef):
        if kernel.symbol not in self._functions:
            self._functions[kernel.symbol] = self.load(kernel)
        return self._functions[kernel.symbol]

    def weights(self, kernel: KernelRef) -> list:
        """The weights a call passes after the kernel's inputs, on the device, uploaded once per model; none for
        a kernel that binds them when it is loaded (`binds_weights`)."""
        if self.binds_weights(kernel):
            return []
        model, dtype = kernel.function["model"], kernel.function["dtype"]
        if (model, dtype) not in self._weights:
            self._weights[(model, dtype)] = [self.upload(array) for array in self.host_weights(kernel)]
        return self._weights[(model, dtype)]

    def binds_weights(self, kernel: KernelRef) -> bool:
        """Whether the loaded kernel holds its weights itself (IREE parameters) rather than taking them per call."""
        return False

    def host_weights(self, kernel: KernelRef) -> list[np.ndarray]:
        """The kernel's weights as host arrays, in its signature's order (read from the checkpoint, or the
        deterministic random weights of a built-in model)."""
        model, dtype = kernel.function["model"], kernel.function["dtype"]
        model_dir = Path(self.context.model_dir) if self.context.model_dir else None
        source = prepare_weights(model, dtype, model_dir=model_dir, cache_dir=Path(self.context.cache_dir))
        arrays = load_weights(model, source, dtype)
        return [arrays[name] for name in kernel.weights]


def runner_context(device: str) -> WorkerContext:
    """The context of a kernel runner: the first device of the profile, nothing preloaded."""
    return WorkerContext(worker=f"{device}:runner", device=device, cores=(), kernels=(), run_id="", cache_dir="",
                         device_index=0)


def device_runner(device: KernelDevice, artifact: str | Path, symbol: str):
    """One compiled kernel on a kernel device, as a function of numpy arrays returning a tuple of them: the
    conformance suite's kernel runner (`spec/conformance.md`)."""
    function = device.function(KernelRef(symbol, str(artifact), {}, ()))

    def run(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        results = function(*arrays)
        return tuple(device.to_host(r) for r in (results if isinstance(results, (tuple, list)) else (results,)))

    return run
