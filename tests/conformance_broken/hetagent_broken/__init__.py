"""A backend that is the cpu reference on a renamed host-CPU profile, with three deliberate faults:

1. wrong numerics in one op: its kernel runner returns matrix-vector products 5 % too large (`runner.py`);
2. a bad record: its cost table's points are not sorted by size;
3. a crashing executor: vector search raises (`executors.py`).

The conformance suite must fail exactly the tests that check those, and pass the rest.
"""

from __future__ import annotations

import dataclasses

from hetagent.plugins import BackendInfo, CostTable, DetectedDevice, Detection, ExecutorSpec, hookimpl

from hetagent_cpu import detect, lowering, profiles

NAME = "broken"
DEVICE = "broken-cpu"


@hookimpl
def hetagent_backend_info():
    return BackendInfo(name=NAME, version="0.0.1", plugin_api="1.1", vendor="test", summary="three faults")


@hookimpl
def hetagent_device_profiles():
    return [dataclasses.replace(profiles.host_profile(detect.host_cpu()), name=DEVICE, backend=NAME)]


@hookimpl
def hetagent_detect():
    return Detection(backend=NAME, available=True, devices=(DetectedDevice(profile=DEVICE, index=0, name="host"),))


@hookimpl
def hetagent_lowering_pipelines():
    cpu = lowering.pipeline(DEVICE, detect.cpu_info().arch)
    return [dataclasses.replace(cpu, backend=NAME)]


@hookimpl
def hetagent_executors():
    return [
        ExecutorSpec(NAME, "llm", ("llm.prefill", "llm.decode", "memory.embed"), (DEVICE,),
                     "hetagent_cpu.llm:LLMExecutor"),
        ExecutorSpec(NAME, "search", ("memory.search",), (DEVICE,), "hetagent_broken.executors:CrashingSearch"),
    ]


@hookimpl
def hetagent_cost_models():
    return [CostTable(backend=NAME, device=DEVICE, op_class="gemm", dtype="fp32",
                      points=((2e9, 0.2), (1e9, 0.1)), source="fault 2: not sorted by size")]
