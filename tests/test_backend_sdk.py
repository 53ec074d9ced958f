"""The backend SDK's shared execution layer: one IREE device class for every HAL driver (device selection and
pinning, tested with fake driver enumerations), and the layout that gives each detected GPU its own worker."""

from __future__ import annotations

import types

import iree
import pytest

from hetagent.backend import DetectedDevice, Detection, Registry
from hetagent.backend.executor import WorkerContext
from hetagent.backend import iree as host_iree
from hetagent.backend.iree import DRIVERS, IreeDevice, select_device
from hetagent.plan import Placement
from hetagent.errors import HetagentError
from hetagent.runtime.layout import plan_workers
from hetagent.runtime.program import Block, Node, Program

GPUS = [{"device_id": 1, "path": "GPU-aaaaaaaa-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3"},
        {"device_id": 2, "path": "GPU-bbbbbbbb-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3"}]


def test_select_device_by_uuid_whatever_the_enumeration_order():
    assert select_device(GPUS, driver_name="cuda", index=0, uuid="GPU-bbbbbbbb-0000-0000-0000-000000000000") is GPUS[1]
    assert select_device(list(reversed(GPUS)), driver_name="cuda", index=1,
                         uuid="GPU-aaaaaaaa-0000-0000-0000-000000000000") is GPUS[0]


def test_select_device_by_index_when_there_is_no_uuid():
    assert select_device(GPUS, driver_name="hip", index=1, uuid=None) is GPUS[1]


def test_a_missing_device_is_an_error_naming_what_is_there():
    with pytest.raises(HetagentError, match=r"hip driver has no device with index 2.*#0 NVIDIA H100"):
        select_device(GPUS, driver_name="hip", index=2, uuid=None)
    with pytest.raises(HetagentError, match="no device with uuid GPU-cccc"):
        select_device(GPUS, driver_name="cuda", index=None, uuid="GPU-cccc")


class FakeRuntime:
    """What IreeDevice uses of `iree.runtime`, recording how it was asked for a device."""

    def __init__(self):
        self.calls = []
        self.flags = types.SimpleNamespace(parse_flags=lambda *f: self.calls.append(("flags", f)))

    def get_driver(self, name):
        self.calls.append(("driver", name))
        return types.SimpleNamespace(query_available_devices=lambda: GPUS,
                                     create_device=lambda device_id: self.calls.append(("device", device_id)) or
                                     f"hal-device-{device_id}",
                                     create_default_device=lambda allocators: self.calls.append(
                                         ("default device", name, allocators)) or f"hal-{name}")

    def Config(self, driver_name=None, device=None):  # noqa: N802 (IREE's name)
        self.calls.append(("config", driver_name, device))
        return types.SimpleNamespace(device=device)


@pytest.fixture
def fake_runtime(monkeypatch):
    fake = FakeRuntime()
    monkeypatch.setattr(iree, "runtime", fake, raising=False)
    monkeypatch.setattr(host_iree, "_HOST_DEVICES", {})  # the process's real host devices stay out of it
    monkeypatch.setitem(__import__("sys").modules, "iree.runtime", fake)
    return fake


def context(**changes) -> WorkerContext:
    fields = dict(worker="w", device="h100-sxm", cores=(0, 1), kernels=(), run_id="hxtest", cache_dir="/tmp")
    return WorkerContext(**{**fields, **changes})


@pytest.mark.parametrize("backend, driver", [("hetagent_cuda", "cuda"), ("hetagent_rocm", "hip")])
def test_gpu_executors_are_the_shared_layer_pinned_to_their_device(fake_runtime, backend, driver):
    from importlib import import_module

    executor = import_module(f"{backend}.executors").LLMExecutor(
        context(device_index=1, device_uuid="GPU-bbbbbbbb-0000-0000-0000-000000000000"))
    assert isinstance(executor.device, IreeDevice) and executor.device.driver is DRIVERS[driver]
    assert ("driver", driver) in fake_runtime.calls and ("device", 2) in fake_runtime.calls
    assert ("config", None, "hal-device-2") in fake_runtime.calls
    assert not any(c[0] == "flags" for c in fake_runtime.calls)  # the task-system flag is for host drivers
    assert not any(c[0] == "default device" for c in fake_runtime.calls)


def test_the_cpu_executor_is_the_same_layer_on_local_task(fake_runtime):
    from hetagent_cpu.executors import LLMExecutor

    executor = LLMExecutor(context(device="host-cpu", cores=(0, 1)))
    assert executor.device.driver is DRIVERS["local-task"]
    # the host's own device, its freed blocks cached for the next step (no page faults on fresh transients)
    assert ("default device", "local-task", ["caching"]) in fake_runtime.calls
    assert ("config", None, "hal-local-task") in fake_runtime.calls
    assert ("flags", ("--task_topology_group_count=2",)) in fake_runtime.calls


def test_executors_of_a_process_share_its_host_device(fake_runtime):
    """One device per host driver and task-system size, kept for the process (`backend.iree._host_device`)."""
    from hetagent_cpu.executors import LLMExecutor

    first, second = LLMExecutor(context(device="host-cpu")), LLMExecutor(context(device="host-cpu", worker="w2"))
    assert first.device.config.device is second.device.config.device == "hal-local-task"
    assert [c for c in fake_runtime.calls if c[0] == "default device"] == [("default device", "local-task", ["caching"])]


def test_a_cpu_worker_pinned_to_one_core_runs_kernels_inline_on_local_sync(fake_runtime):
    """One core has no room for a task system: its worker thread would only take turns with the caller."""
    from hetagent_cpu.executors import LLMExecutor

    executor = LLMExecutor(context(device="host-cpu", cores=(1,)))
    assert executor.device.driver is DRIVERS["local-sync"]
    assert ("config", None, "hal-local-sync") in fake_runtime.calls
    assert not any(c[0] == "flags" for c in fake_runtime.calls)


def test_unknown_hal_driver_is_an_error():
    from hetagent.backend import llm

    class Odd(llm.LLMExecutor):
        driver = "vulkan-ish"

    with pytest.raises(HetagentError, match="'vulkan-ish' is not one hetagent runs"):
        Odd(context())


def _program(device: str, backend: str) -> Program:
    prefill = Node(0, "llm.prefill", "answer.prefill", {}, (0,), (1, 2), placement=Placement(device, backend))
    decode = Node(1, "llm.decode", "answer.decode", {}, (1, 2), (3,), placement=Placement("host-cpu", "cpu"))
    return Program("chat", None, Block((0,), (prefill, decode), (3,)))


def _registry_with_gpus(count: int) -> Registry:
    from hetagent_cpu import CpuBackend
    from hetagent_cuda import CudaBackend

    class Detected(CudaBackend):
        def detect(self):
            devices = [DetectedDevice("h100-sxm", i, "NVIDIA H100 80GB HBM3", details={"uuid": f"GPU-{i}"})
                       for i in range(count)]
            return Detection("cuda", available=True, devices=devices) if devices else \
                Detection("cuda", available=False, reason="the CUDA driver reports no devices")

    return Registry.load(["cpu", "cuda"], autoload=False, plugins={"cpu": CpuBackend, "cuda": Detected})


def test_each_detected_gpu_gets_its_own_pinned_worker():
    workers, device_of = plan_workers(_program("h100-sxm", "cuda"), _registry_with_gpus(2), cpu_partitions=1)
    gpu = [w for w in workers if w.device == "h100-sxm"]
    assert [(w.name, w.device_index, w.device_uuid) for w in gpu] == [("h100-sxm:0", 0, "GPU-0"),
                                                                      ("h100-sxm:1", 1, "GPU-1")]
    assert gpu[0].factories == {"llm.prefill": "hetagent_cuda.executors:LLMExecutor"}
    assert device_of == {0: "h100-sxm", 1: "host-cpu"}


def test_on_a_cluster_a_device_class_is_one_pool_holding_its_ray_resource():
    workers, _ = plan_workers(_program("h100-sxm", "cuda"), _registry_with_gpus(0), local=False)
    (gpu,) = [w for w in workers if w.device == "h100-sxm"]
    assert gpu.resources == {"h100-sxm": 1.0, "GPU": 1.0} and gpu.device_index is None
