"""Which worker processes a run starts and which ops each serves.

One worker per device: on this node, one per detected device of each placed profile (a GPU worker owns one
GPU, pinned by the index and UUID its backend's detection reports); the host device, with `--cpu-partitions N`,
becomes N workers pinned to disjoint core sets (`os.sched_setaffinity`), named `<host>:0` … `<host>:N-1`. Where
the plan names a partition for an op (`Placement.partition`: `hetagent run` without a plan plans this host's
partitions, `planner.host`), partition i runs the ops placed on it — those ops, not every op of their kind — and
ops placed on no partition go to any. Without partitions in the plan, with two or more partitions the first half serves the prompt side (prefill,
embeddings, speech) and the second half the decode side, so prefill and decode really run on different processes
and cores; host ops (tools, transforms, search) go to any partition. On a cluster (`local=False`, RayEngine) a device class is one pool
whose workers hold the device profile's Ray resource instead.

Each op runs in the executor its placement's backend declares for it on that device (`hetagent_executors`).
Placement already refused (or, with `--allow-fallback`, moved to the host) every op that cannot run where it is
placed (`hetagent.compiler.place`), so a missing executor here is an error, never a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hetagent.backend.registry import Registry
from hetagent.errors import HetagentError
from hetagent.hardware.machine_load import usable_cores
from hetagent.runtime.program import Node, Program, is_compute

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
    device_index: int | None = None  # which device of its profile (GPUs on this node): from detection
    device_uuid: str = ""
    nodes: frozenset[int] = frozenset()  # the program's nodes (by index) it runs: its device's, its partition's

    def serves(self, op: str) -> bool:
        return op in self.factories

    def runs(self, node) -> bool:
        return node.index in self.nodes


def plan_workers(program: Program, registry: Registry, *, cpu_partitions: int = 1,
                 local: bool = True) -> tuple[list[WorkerPlan], dict[int, str]]:
    """The workers to start, and for each node (by index) the device it runs on; `local`: on this node (its
    devices must be present), else on a cluster."""
    host = registry.host
    factories: dict[str, dict[str, str]] = {}
    on_host: dict[int, Node] = {}  # the nodes placed on the host device, by index
    backends: dict[str, str] = {}
    device_of: dict[int, str] = {}
    for node in (n for n in program.nodes() if is_compute(n) and n.op not in ENGINE_OPS):
        device, backend = node.placement.device, node.placement.backend
        spec = registry.executor_for(backend, device, node.op)
        if spec is None:
            raise HetagentError(f"'{node.label}' ({node.op}): no {backend} executor claims it on {device}")
        factories.setdefault(device, {})[node.op] = spec.factory
        if device == host.device:
            on_host[node.index] = node
        backends[device] = backend
        device_of[node.index] = device
    detected = {} if not local else {
        p: [d for det in registry.detect() if det.available for d in det.devices if d.profile == p] for p in factories}
    workers = []
    for device, ops in factories.items():
        nodes = frozenset(i for i, d in device_of.items() if d == device)
        if device == host.device:
            workers += _cpu_partitions(on_host, ops, cpu_partitions, host.device, host.backend)
        elif not local:
            workers.append(WorkerPlan(device, device, backends[device], (), ops, ray_resources(registry.profile(device)),
                                      nodes=nodes))
        elif not detected[device]:
            raise HetagentError(f"ops are placed on {device}, which is not present on this node")
        else:
            workers += [WorkerPlan(f"{device}:{d.index}", device, backends[device], (), ops, device_index=d.index,
                                   device_uuid=d.details.get("uuid", ""), nodes=nodes) for d in detected[device]]
    return workers, device_of


def ray_resources(profile) -> dict[str, float]:
    """What one worker of a device holds on a Ray cluster: its class's custom resource (`ray_resource`, which keeps
    device classes apart) and, for a GPU, Ray's GPU slot, so that Ray gives the actor one device of its own and sets
    its visibility variable (CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES)."""
    return {profile.ray_resource: 1.0, **({"GPU": 1.0} if profile.kind == "gpu" else {})}


def check_partitions(count: int) -> None:
    cores = usable_cores()
    if count < 1 or count > len(cores):
        raise HetagentError(f"--cpu-partitions {count}: this process may use {len(cores)} cores; give 1 to {len(cores)}")


def _cpu_partitions(on_host: dict[int, Node], ops: dict[str, str], count: int, device: str,
                    backend: str) -> list[WorkerPlan]:
    check_partitions(count)
    named = {n.placement.partition for n in on_host.values() if n.placement.partition is not None}
    if named and max(named) >= count:
        raise HetagentError(f"the plan places ops on {device} partition {max(named)}, but the host is split into "
                            f"{count} (--cpu-partitions {max(named) + 1} or more)")
    cores = usable_cores()
    size = len(cores) // count
    workers = []
    for i in range(count):
        share = tuple(cores[i * size: (i + 1) * size if i < count - 1 else len(cores)])
        if named:
            nodes = [n for n in on_host.values() if n.placement.partition in (i, None)]
        elif count == 1:
            nodes = list(on_host.values())
        else:
            excluded = DECODE_SIDE if i < count // 2 else PROMPT_SIDE
            nodes = [n for n in on_host.values() if n.op not in excluded]
        served = {op: f for op, f in ops.items() if any(n.op == op for n in nodes)}
        workers.append(WorkerPlan(f"{device}:{i}", device, backend, share, served,
                                  nodes=frozenset(n.index for n in nodes)))
    return workers

