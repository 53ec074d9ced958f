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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hetagent.backend.devices import KernelDevice, device_runner, runner_context
from hetagent.backend.executor import KernelRef, WorkerContext
from hetagent.errors import HetagentError


@dataclass(frozen=True)
class Driver:
    """How one IREE HAL driver differs from the others."""

    name: str
    pinned: bool  # a worker owns one of several devices (GPUs); False: the host's task system
    threads_per_core: bool = False  # size the task system from the worker's pinned cores (host drivers)


DRIVERS = {
    "local-task": Driver("local-task", pinned=False, threads_per_core=True),
    "local-sync": Driver("local-sync", pinned=False),
    "cuda": Driver("cuda", pinned=True),
    "hip": Driver("hip", pinned=True),
}


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
    """A worker's device through one IREE HAL driver: kernels loaded once, weights uploaded once and resident."""

    def __init__(self, context: WorkerContext, driver_name: str):
        import iree.runtime as rt

        super().__init__(context)
        self._rt = rt
        self.driver = driver(driver_name)
        if self.driver.threads_per_core:
            # one task-system worker per core this worker is pinned to: IREE would otherwise size its pool from
            # every core of the machine. IREE resets its threads' affinity; `worker_main` pins them afterwards.
            rt.flags.parse_flags(f"--task_topology_group_count={max(1, len(context.cores))}")
        if self.driver.pinned:
            hal = rt.get_driver(driver_name)
            entry = select_device(hal.query_available_devices(), driver_name=driver_name,
                                  index=context.device_index, uuid=context.device_uuid)
            self.config = rt.Config(device=hal.create_device(entry["device_id"]))
        else:
            self.config = rt.Config(driver_name)
        self.preload()

    def load(self, kernel: KernelRef):
        module = self._rt.VmModule.copy_buffer(self.config.vm_instance, Path(kernel.artifact).read_bytes())
        return self._rt.SystemContext(vm_modules=[module], config=self.config).modules.module[kernel.symbol]

    def upload(self, array: np.ndarray):
        return self._rt.asdevicearray(self.config.device, array)

    def to_host(self, array) -> np.ndarray:
        # explicit: an array this device uploaded refuses numpy's implicit transfer
        return np.array(array.to_host()) if hasattr(array, "to_host") else np.asarray(array)


def kernel_runner(artifact: str | Path, symbol: str, device: str, *, driver_name: str = "local-sync"):
    """The conformance suite's kernel runner on an IREE driver: host drivers run on the caller's thread
    (`local-sync`), a GPU driver on the first device it enumerates."""
    return device_runner(IreeDevice(runner_context(device), driver_name), artifact, symbol)
