"""A backend that is the cpu reference on a renamed host-CPU profile, with three deliberate faults:

1. wrong numerics in one op: its kernel runner returns matrix-vector products 5 % too large (`runner.py`);
2. a bad record: its cost table's points are not sorted by size;
3. a crashing executor: vector search raises (`executors.py`).

The conformance suite must fail exactly the tests that check those, and pass the rest.
"""

from __future__ import annotations

import dataclasses

from hetagent.backend import Backend, CostTable, DetectedDevice, Detection, ExecutorSpec

from hetagent_cpu import detect, lowering, profiles

NAME = "broken"
DEVICE = "broken-cpu"


class BrokenBackend(Backend):
    name = NAME
    vendor = "test"
    plugin_api = "2.0"
    version = "0.0.1"
    summary = "three faults"

    def profiles(self):
        return [dataclasses.replace(profiles.host_profile(detect.host_cpu()), name=DEVICE, backend=NAME)]

    def detect(self):
        return Detection(backend=NAME, available=True, devices=(DetectedDevice(profile=DEVICE, index=0, name="host"),))

    def pipelines(self):
        return [dataclasses.replace(lowering.pipeline(DEVICE, detect.cpu_info().arch), backend=NAME)]

    def executors(self):
        return [
            ExecutorSpec(NAME, "llm", ("llm.prefill", "llm.decode", "memory.embed"), (DEVICE,),
                         "hetagent_cpu.executors:LLMExecutor"),
            ExecutorSpec(NAME, "search", ("memory.search",), (DEVICE,), "hetagent_broken.executors:CrashingSearch"),
        ]

    def cost_tables(self):
        return [CostTable(backend=NAME, device=DEVICE, op_class="gemm", dtype="fp32",
                          points=((2e9, 0.2), (1e9, 0.1)), source="fault 2: not sorted by size")]
