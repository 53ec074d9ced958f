"""Which worker processes a run starts and which ops each serves.

One worker per placed device; the host CPU, with `--cpu-partitions N`, becomes N workers pinned to disjoint
core sets (`os.sched_setaffinity`), named `host-cpu:0` … `host-cpu:N-1`. With two or more partitions the first
half serves the prompt side (prefill, embeddings, speech) and the second half the decode side, so prefill and
decode really run on different processes and cores; host ops (tools, transforms, search) go to any partition.

Each op runs in the executor its placement's backend declares for it on that device (`hetagent_executors`); an
op that backend does not claim falls back to the cpu backend's executor on the host, reported (or an error with
`strict`). A placed device that is not present on this node is an error — unless the workers run on a cluster
(`local=False`, RayEngine), where a worker of a device holds the device profile's Ray resource instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hetagent.compiler.place import HOST_DEVICE, REFERENCE_BACKEND
from hetagent.errors import HetagentError
from hetagent.plugins.registry import Registry
from hetagent.runtime.program import Program, is_compute

ENGINE_OPS = ("input.query", "input.audio", "kv.transfer")  # the engine itself handles these
PROMPT_SIDE = frozenset({"llm.prefill", "memory.embed", "audio.stt", "audio.tts"})
DECODE_SIDE = frozenset({"llm.decode"})


@dataclass(frozen=True)
class WorkerPlan:
    name: str
    device: str
    backend: str
    cores: tuple[int, ...]
    factories: dict[str, str]  # op -> executor factory
    resources: dict[str, float] = field(default_factory=dict)  # Ray resources one worker holds: {"h100-sxm": 1}

    def serves(self, op: str) -> bool:
        return op in self.factories


def _executor_for(registry: Registry, backend: str, device: str, op: str) -> str | None:
    kinds = {device, registry.profile(device).kind} if device != HOST_DEVICE else {device, "cpu"}
    for spec in registry.executors():
        if spec.backend == backend and op in spec.ops and kinds & set(spec.device_kinds):
            return spec.factory
    return None


def plan_workers(program: Program, registry: Registry, *, cpu_partitions: int = 1, strict: bool = False,
                 on_fallback=None, local: bool = True) -> tuple[list[WorkerPlan], dict[int, str]]:
    """The workers to start, and for each node (by index) the device it runs on after any fallback; `local`:
    on this node (its devices must be present), else on a cluster."""
    present = {HOST_DEVICE} | {d.profile for det in registry.detect() if det.available for d in det.devices}
    factories: dict[str, dict[str, str]] = {}
    backends: dict[str, str] = {}
    device_of: dict[int, str] = {}
    for node in (n for n in program.nodes() if is_compute(n) and n.op not in ENGINE_OPS):
        device, backend = node.placement.device, node.placement.backend
        factory = _executor_for(registry, backend, device, node.op)
        if factory is None and backend != REFERENCE_BACKEND:
            message = f"'{node.label}' ({node.op}): no {backend} executor claims it on {device}"
            if strict:
                raise HetagentError(message + " (--strict-placement makes this an error)")
            (on_fallback or (lambda m: None))(message + f"; it runs on the {REFERENCE_BACKEND} reference executor")
            device, backend = HOST_DEVICE, REFERENCE_BACKEND
            factory = _executor_for(registry, backend, device, node.op)
        if factory is None:
            raise HetagentError(f"'{node.label}': no executor for {node.op} on {backend}/{device} is installed")
        if local and device not in present:
            raise HetagentError(f"'{node.label}' is placed on {device}, which is not present on this node "
                                f"(present: {', '.join(sorted(present))}); plan for this node's devices")
        factories.setdefault(device, {})[node.op] = factory
        backends[device] = backend
        device_of[node.index] = device
    workers = []
    for device, ops in factories.items():
        if device == HOST_DEVICE:
            workers += _cpu_partitions(ops, cpu_partitions)
        else:
            workers.append(WorkerPlan(device, device, backends[device], (), ops, ray_resources(registry.profile(device))))
    return workers, device_of


def ray_resources(profile) -> dict[str, float]:
    """What one worker of a device holds on a Ray cluster: its class's custom resource (`ray_resource`, which keeps
    device classes apart) and, for a GPU, Ray's GPU slot, so that Ray gives the actor one device of its own and sets
    its visibility variable (CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES)."""
    return {profile.ray_resource: 1.0, **({"GPU": 1.0} if profile.kind == "gpu" else {})}


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def check_partitions(count: int) -> None:
    cores = usable_cores()
    if count < 1 or count > len(cores):
        raise HetagentError(f"--cpu-partitions {count}: this process may use {len(cores)} cores; give 1 to {len(cores)}")


def _cpu_partitions(ops: dict[str, str], count: int) -> list[WorkerPlan]:
    check_partitions(count)
    cores = usable_cores()
    size = len(cores) // count
    workers = []
    for i in range(count):
        share = tuple(cores[i * size: (i + 1) * size if i < count - 1 else len(cores)])
        if count == 1:
            served = ops
        else:
            excluded = DECODE_SIDE if i < count // 2 else PROMPT_SIDE
            served = {op: f for op, f in ops.items() if op not in excluded}
        workers.append(WorkerPlan(f"{HOST_DEVICE}:{i}", HOST_DEVICE, REFERENCE_BACKEND, share, served))
    return workers

