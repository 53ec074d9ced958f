"""A worker's IREE device on the host CPU: kernels loaded once, weights uploaded once and kept resident."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hetagent.models.catalog import card
from hetagent.runtime.executor import WorkerContext
from hetagent.runtime.weights import load_weights, prepare_weights


class IreeDevice:
    def __init__(self, context: WorkerContext):
        import iree.runtime as rt

        # one task-system worker per core this worker is pinned to: IREE would otherwise size its pool from every
        # core of the machine. This mode leaves the threads free to run on any core (IREE resets their affinity);
        # `worker_main` pins them to the partition's cores once the executors are built.
        rt.flags.parse_flags(f"--task_topology_group_count={max(1, len(context.cores))}")
        self._rt = rt
        self.config = rt.Config("local-task")
        self.context = context
        self.temperature = context.temperature
        self._functions: dict[str, object] = {}
        self._weights: dict[tuple[str, str], list] = {}
        for kernel in context.kernels:  # load everything before the first call, so no request pays for it
            self.function(kernel)
            self.weights(kernel)

    def card(self, kernel):
        return card(kernel.function["model"])

    def upload(self, array: np.ndarray):
        return self._rt.asdevicearray(self.config.device, array)

    def function(self, kernel):
        if kernel.symbol not in self._functions:
            module = self._rt.VmModule.copy_buffer(self.config.vm_instance, Path(kernel.artifact).read_bytes())
            system = self._rt.SystemContext(vm_modules=[module], config=self.config)
            self._functions[kernel.symbol] = system.modules.module[kernel.symbol]
        return self._functions[kernel.symbol]

    def weights(self, kernel) -> list:
        model, dtype = kernel.function["model"], kernel.function["dtype"]
        if (model, dtype) not in self._weights:
            model_dir = Path(self.context.model_dir) if self.context.model_dir else None
            source = prepare_weights(model, dtype, model_dir=model_dir, cache_dir=Path(self.context.cache_dir))
            arrays = load_weights(model, source)
            self._weights[(model, dtype)] = [self.upload(arrays[name]) for name in kernel.weights]
        return self._weights[(model, dtype)]


def kernel_runner(artifact: str | Path, symbol: str, device: str):
    """One compiled kernel as a function of numpy arrays, on IREE's `local-sync` driver (the caller's thread).
    The conformance suite runs kernels through it (`conformance.toml`'s `runner`, `spec/conformance.md`)."""
    import iree.runtime as rt

    config = rt.Config("local-sync")
    module = rt.VmModule.copy_buffer(config.vm_instance, Path(artifact).read_bytes())
    function = rt.SystemContext(vm_modules=[module], config=config).modules.module[symbol]

    def run(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        results = function(*arrays)
        return tuple(np.asarray(r) for r in (results if isinstance(results, (tuple, list)) else (results,)))

    return run
