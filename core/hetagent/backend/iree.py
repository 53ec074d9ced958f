"""The IREE execution layer every IREE backend shares: one device class for every HAL driver.

The cpu, cuda and rocm backends compile the same kernels with different IREE targets; at run time they differ
only in the HAL driver that loads the artifact (`local-task`, `cuda`, `hip`) and in how a worker picks its
device. Those differences live in the small `DRIVERS` table (as iree-turbine's `runtime/device.py` keeps
them); everything else — loading a `.vmfb` once, uploading a model's weights once and keeping them resident,
calling a kernel — is `IreeDevice` (a `KernelDevice`), whatever the driver.

Device pinning: a worker of a GPU owns one device, named by the detection that found it (`WorkerContext.
device_index`, and `device_uuid` where the backend's detection reports one). `select_device` picks it from what
the driver enumerates — by UUID where both sides have one (stable whatever the enumeration order), else by
position — and never silently takes another: a device that is not there is an error naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hetagent.backend.devices import KernelDevice, device_runner, runner_context
from hetagent.backend.executor import KernelRef, WorkerContext
from hetagent.backend.functions import IN_PLACE_REFLECTION, PARAMETER_SCOPE, ModelFunction
from hetagent.errors import HetagentError


@dataclass(frozen=True)
class Driver:
    """How one IREE HAL driver differs from the others."""

    name: str
    pinned: bool  # a worker owns one of several devices (GPUs); False: the host's task system
    threads_per_core: bool = False  # size the task system from the worker's pinned cores (host drivers)
    # the driver a worker pinned to a single core runs instead: a task system there only hands each dispatch to a
    # thread on that same core and wakes the caller back, so the two take turns (decode steps twice as slow)
    one_core: str | None = None
    # HAL allocators layered over the device's own: "caching" keeps freed host blocks for the next call, where each
    # decode step would otherwise map its transient buffers (MBs at batch 16) fresh, page fault by page fault
    allocators: tuple[str, ...] = ()


_HOST = ("caching",)
DRIVERS = {
    "local-task": Driver("local-task", pinned=False, threads_per_core=True, one_core="local-sync", allocators=_HOST),
    "local-sync": Driver("local-sync", pinned=False, allocators=_HOST),
    "cuda": Driver("cuda", pinned=True),
    "hip": Driver("hip", pinned=True),
}


# (driver, task-system groups) -> the process's host device: see `_host_device`
_HOST_DEVICES: dict[tuple[str, int], object] = {}


def _host_device(rt, host: Driver, cores: int):
    """The process's IREE device for a host driver, created once per task-system size and held here, by the
    module, until the interpreter ends. A buffer from a layered allocator ("caching") outliving its device crashes
    the process when it is freed, and an `iree.runtime.DeviceArray` that is its device's last owner frees the device
    first (SIGSEGV at exit, seen in every worker when each executor owned its device); a device held here outlives
    the arrays of the executors that share it."""
    groups = max(1, cores) if host.threads_per_core else 0
    if (host.name, groups) not in _HOST_DEVICES:
        if groups:
            # one task-system worker per core this worker is pinned to: IREE would otherwise size its pool from
            # every core of the machine. IREE resets its threads' affinity; `worker_main` pins them afterwards.
            rt.flags.parse_flags(f"--task_topology_group_count={groups}")
        device = rt.get_driver(host.name).create_default_device(allocators=list(host.allocators))
        _HOST_DEVICES[host.name, groups] = device
    return _HOST_DEVICES[host.name, groups]


def driver(name: str) -> Driver:
    if name not in DRIVERS:
        raise HetagentError(f"IREE HAL driver {name!r} is not one hetagent runs; known: {', '.join(DRIVERS)}")
    return DRIVERS[name]


def select_device(available: list[dict], *, driver_name: str, index: int | None, uuid: str | None) -> dict:
    """The entry of `HalDriver.query_available_devices()` (dicts with `device_id`, `path`, `name`) that is the
    worker's device: the one whose path carries `uuid`, else the `index`-th. Missing: an error naming it."""
    if uuid:
        wanted = uuid.lower().removeprefix("gpu-")
        for entry in available:
            if wanted and wanted in str(entry.get("path", "")).lower():
                return entry
    if index is not None and 0 <= index < len(available):
        return available[index]
    seen = "; ".join(f"#{i} {e.get('name', '?')} ({e.get('path', '')})" for i, e in enumerate(available)) or "none"
    who = f"uuid {uuid}" if uuid else f"index {index}"
    raise HetagentError(f"the {driver_name} driver has no device with {who}; it enumerates: {seen}")


class IreeDevice(KernelDevice):
    """A worker's device through one IREE HAL driver: kernels loaded once, weights bound (as parameters) or
    uploaded once, and resident."""

    def __init__(self, context: WorkerContext, driver_name: str):
        import iree.runtime as rt

        super().__init__(context)
        self._rt = rt
        self.driver = driver(driver_name)
        if self.driver.one_core and len(context.cores) == 1:
            self.driver = driver(self.driver.one_core)
        if self.driver.pinned:
            hal = rt.get_driver(driver_name)
            entry = select_device(hal.query_available_devices(), driver_name=driver_name,
                                  index=context.device_index, uuid=context.device_uuid)
            self.config = rt.Config(device=hal.create_device(entry["device_id"]))
        else:
            self.config = rt.Config(device=_host_device(rt, self.driver, len(context.cores)))
        self._bound: set[str] = set()  # kernels that bind their weights as parameters
        self._parameters: dict[tuple[str, str], object] = {}  # (model, dtype) -> its ParameterIndex
        self.preload()

    def load(self, kernel: KernelRef):
        """The kernel's entry point. An artifact whose entry takes only the function's inputs binds its weights as
        IREE parameters (`hetagent.backend.functions.weights_as_parameters`): they are bound here, from host
        arrays, and the module's initializer (packing them for data-tiled matmuls) runs once, now."""
        artifact = self._rt.VmModule.copy_buffer(self.config.vm_instance, Path(kernel.artifact).read_bytes())
        arity = entry_arity(artifact, kernel.symbol) - (in_place_input(artifact, kernel.symbol) is not None)
        if not kernel.function:  # a kernel runner's: the caller passes every array, weights last
            return _BindOnCall(self, artifact, kernel.symbol, arity)
        inputs = len(ModelFunction(**kernel.function).signature(self.card(kernel))["inputs"])
        if arity == inputs + len(kernel.weights):
            return self._entry([artifact], kernel.symbol)
        if arity != inputs:
            raise HetagentError(f"{kernel.artifact}: @{kernel.symbol} takes {arity} arguments; a "
                                f"{kernel.function['function']} kernel takes {inputs} inputs, then its "
                                f"{len(kernel.weights)} weights unless it binds them as parameters")
        self._bound.add(kernel.symbol)
        model = (kernel.function["model"], kernel.function["dtype"])
        if model not in self._parameters:  # one index per model: its kernels share the host arrays
            self._parameters[model] = self._index(self.host_weights(kernel))
        return self._entry([artifact], kernel.symbol, self._parameters[model])

    def binds_weights(self, kernel: KernelRef) -> bool:
        return kernel.symbol in self._bound

    def _index(self, weights: list[np.ndarray]):
        """Weight i as parameter "i" (`spec/compiler.md`, kernel signatures); the index keeps the arrays alive."""
        index = self._rt.ParameterIndex()
        for i, array in enumerate(weights):
            index.add_buffer(str(i), np.ascontiguousarray(array))
        return index

    def _entry(self, modules: list, symbol: str, parameters=None):
        """The entry point as a function of the kernel's signature: inputs (then weights, unless bound)."""
        written = in_place_input(modules[-1], symbol)
        if parameters is not None:
            provider = parameters.create_provider(scope=PARAMETER_SCOPE)
            modules = [self._rt.create_io_parameters_module(self.config.vm_instance, provider), *modules]
        entry = self._rt.SystemContext(vm_modules=modules, config=self.config).modules.module[symbol]
        return entry if written is None else _InPlace(self, entry, written)

    def upload(self, array: np.ndarray):
        return self._rt.asdevicearray(self.config.device, array)

    def to_host(self, array) -> np.ndarray:
        # explicit: an array this device uploaded refuses numpy's implicit transfer
        return np.array(array.to_host()) if hasattr(array, "to_host") else np.asarray(array)


def entry_arity(module, symbol: str) -> int:
    """How many arguments the artifact's entry point takes: its VM calling convention (`0rrr_rr`: version, one
    letter per argument, `_`, one per result), which the runtime's Python binding shows only in the repr."""
    found = re.search(r"\(0(\w*?)_\w*\)", repr(module.lookup_function(symbol)))
    if found is None:
        raise HetagentError(f"cannot read the calling convention of @{symbol} from {module.lookup_function(symbol)!r}")
    return len(found.group(1))


def in_place_input(module, symbol: str) -> int | None:
    """Which input the entry point writes in place (`functions.decode_in_place`), from its reflection; None if none."""
    index = module.lookup_function(symbol).reflection.get(IN_PLACE_REFLECTION)
    return None if index is None else int(index)


class _InPlace:
    """An entry point that writes input `index` in place (a decode's KV cache): called as the kernel's signature
    says, it passes that input's device buffer twice (as read, and as the store the step's rows are written to)
    and returns the entry's result followed by that buffer, the updated cache."""

    def __init__(self, device: IreeDevice, entry, index: int):
        self.device, self.entry, self.index = device, entry, index

    def __call__(self, *arrays):
        arrays = list(arrays)
        if isinstance(arrays[self.index], np.ndarray):  # written on the device: the caller gets that buffer back
            arrays[self.index] = self.device.upload(arrays[self.index])
        written = arrays[self.index]
        return self.entry(*arrays[: self.index + 1], written, *arrays[self.index + 1 :]), written


class _BindOnCall:
    """A kernel runner's entry point: the arrays past the entry's arity are the weights, bound as parameters
    (the context is built again only when other weight arrays are passed)."""

    def __init__(self, device: IreeDevice, artifact, symbol: str, arity: int):
        self.device, self.artifact, self.symbol, self.arity = device, artifact, symbol, arity
        self._bound: tuple | None = None

    def __call__(self, *arrays):
        inputs, weights = arrays[: self.arity], arrays[self.arity :]
        if self._bound is None or len(self._bound[0]) != len(weights) or any(
                a is not b for a, b in zip(self._bound[0], weights)):
            parameters = self.device._index([np.asarray(w) for w in weights]) if weights else None
            self._bound = (weights, self.device._entry([self.artifact], self.symbol, parameters))
        return self._bound[1](*inputs)


def kernel_runner(artifact: str | Path, symbol: str, device: str, *, driver_name: str = "local-sync"):
    """The conformance suite's kernel runner on an IREE driver: host drivers run on the caller's thread
    (`local-sync`), a GPU driver on the first device it enumerates."""
    return device_runner(IreeDevice(runner_context(device), driver_name), artifact, symbol)
