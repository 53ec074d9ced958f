"""`RayTransport`: the router's workers as actors on a Ray cluster (extra `hetagent[ray]`); `RayEngine`: the
router (`engine.Engine`) over it. `spec/runtime.md`, "Router and transports".

- a worker is an actor (`WorkerActor`) that runs the very loop of a worker process (`run_worker`: deadline
  queue, continuous batching, the backend's executors) in a thread, fed through a pipe inside the actor's process;
- a call is an actor method call, its result an ObjectRef that `poll` waits on with `ray.wait`; a dead actor
  surfaces as an error on those refs, reported as the worker lost (the router replaces it and retries its calls);
- a KV cache crosses nodes through the object store as one buffer in the `spec/kv-format.md` layout: the prefill's
  actor returns it as the call's second return value — owned by the driver, so a cache outlives the actor that
  wrote it and a retried decode can read it again — and the decode's actor copies it into a shared-memory segment
  on its node for the executor. The router drops its reference when the request ends, which frees it.

Placement: an actor holds its plan's Ray resources (a device's profile names a custom resource, `ray_resource`, one
per device: start a node with `ray start --resources '{"h100-sxm": 8}'`) and one CPU per core of its partition (one
for a device's worker). Ray grants CPUs by count, not by core id, so an actor is not pinned to its plan's cores
(those are this node's ids; pinning every replica of a pool to them stacks the replicas on the same cores). Every
actor loads the same backends as the driver (`Registry`) and refuses to start on a node that lacks its backend,
runs another version of it, or does not detect its device.

Without `address` the transport starts a fresh local cluster (`ray.init(address="local")`): a bare `ray.init()`
would silently join whatever cluster this node last ran (or `RAY_ADDRESS`), and hang if that one is gone. `address`
joins a cluster (`"auto"`: the one `ray start` made on this node); a driver that initialised Ray itself keeps it.
"""

from __future__ import annotations

import itertools
import json
import selectors
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

from hetagent.errors import HetagentError
from hetagent.backend.registry import Registry, requested_backends
from hetagent.runtime.engine import Engine, EngineOptions
from hetagent.backend.executor import Call
from hetagent.runtime.layout import WorkerPlan
from hetagent.runtime.program import Program
from hetagent.runtime.ray_worker import WorkerActor
from hetagent.runtime.transport import Waker
from hetagent.runtime.worker import WorkerSpec

KV_WRITERS = frozenset({"llm.prefill"})  # ops whose first result is a KV cache
WAKE_SLICE_S = 0.005  # ray.wait cannot be interrupted: a `wake()` is seen within this long


def import_ray():
    try:
        import ray
    except ImportError:
        raise HetagentError("the Ray engine needs Ray: install hetagent[ray] (pip install 'hetagent[ray]')") from None
    return ray


# ---------------------------------------------------------------------------------------------------- transport

class _Actor:
    __slots__ = ("actor", "gone")

    def __init__(self, actor):
        self.actor, self.gone = actor, False


class RayTransport:
    # A call's only way back is its one result ref, so workers' per-step token reports have no channel to the
    # router: streamed requests stream at answer level here (their decodes are sent without `Call.stream`).
    streams_tokens = False

    def __init__(self, run_id: str, address: str | None = None):
        ray = import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:  # a local cluster, or join `address`; actors' output stays in Ray's logs
            with warnings.catch_warnings():
                # Ray announces that it will stop hiding GPUs from actors that ask for none; its present behaviour
                # is the one wanted (a CPU worker sees no GPU), and the notice would land in every run's output
                warnings.filterwarnings("ignore", "Tip: In future versions of Ray", FutureWarning)
                ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.run_id = run_id
        self._actor_class = ray.remote(WorkerActor)
        self._backends = requested_backends()
        registry = Registry.load(self._backends)
        self._versions = {b.name: b.info.version for b in registry.active()}
        self._refs: dict = {}  # pending ref -> (handle, task id or None for `ready`, KV ref)
        self._started = itertools.count()  # actor names must be unique in the cluster
        self._selector = selectors.DefaultSelector()
        self._waker = Waker()  # the only thing in the selector: ray.wait cannot watch a pipe
        self._selector.register(self._waker, selectors.EVENT_READ)

    # ------------------------------------------------------------------------------------------ placement

    def _demand(self, plan: WorkerPlan) -> dict[str, float]:
        """The Ray resources one worker of `plan` holds."""
        return {"CPU": float(max(1, len(plan.cores))), **plan.resources}

    def capacity(self, plan: WorkerPlan) -> int:
        """How many workers of `plan` the cluster's live nodes hold at once (whatever else runs there)."""
        import ray

        demand = self._demand(plan)
        return sum(min(int(node["Resources"].get(r, 0) // need) for r, need in demand.items())
                   for node in ray.nodes() if node["Alive"])

    def _check_capacity(self, plan: WorkerPlan) -> None:
        import ray

        if self.capacity(plan) < 1:
            offered = ", ".join(f"{k}: {v:g}" for k, v in sorted(ray.cluster_resources().items())
                                if not k.startswith(("node:", "memory", "object_store")))
            demand = self._demand(plan)
            wanted = ", ".join(f"{k}: {v:g}" for k, v in demand.items())
            hint = (f"ray start --resources '{json.dumps(dict.fromkeys(plan.resources, 1))}'" if plan.resources
                    else f"ray start --num-cpus {demand['CPU']:g}")
            raise HetagentError(f"worker {plan.name} ({plan.device}) needs Ray resources {{{wanted}}} on one node, "
                                f"and no live node of the cluster offers them (the cluster: {offered}); add a node "
                                f"that does, e.g. `{hint}`")

    def node_of(self, handle: _Actor) -> str:
        import ray

        return ray.get(handle.actor.node.remote())

    # ------------------------------------------------------------------------------------------ the protocol

    def spawn(self, plan: WorkerPlan, spec: WorkerSpec) -> _Actor:
        self._check_capacity(plan)
        demand = self._demand(plan)
        spec = replace(spec, context=replace(spec.context, cores=()))  # not pinned: see the module's doc
        actor = self._actor_class.options(
            num_cpus=demand.pop("CPU"), num_gpus=demand.pop("GPU", 0), resources=demand,
            max_restarts=0,  # the router replaces it, retrying its calls
            name=f"hetagent-{self.run_id}-{plan.name}-{next(self._started)}",
        ).remote(spec, plan.backend, None if not plan.resources else plan.device, self._backends, self._versions)
        handle = _Actor(actor)
        self._refs[actor.ready.remote()] = (handle, None, None)
        return handle

    def send(self, handle: _Actor, call: Call) -> None:
        if call.op in KV_WRITERS:
            ref, kv = handle.actor.run_kv.options(num_returns=2).remote(call)
        else:
            ref, kv = handle.actor.run.remote(call), None
        self._refs[ref] = (handle, call.task, kv)

    def cancel(self, handle: _Actor, tasks: tuple[int, ...]) -> None:
        handle.actor.cancel.remote(tasks)  # what it drops comes back on the calls' own refs

    def poll(self, timeout: float) -> list[tuple[_Actor, tuple]]:
        import ray

        limit = time.monotonic() + timeout
        while True:
            left = limit - time.monotonic()
            if not self._refs:
                woken = self._selector.select(max(0.0, left))
            else:
                refs = list(self._refs)
                if ray.wait(refs, num_returns=1, timeout=max(0.0, min(left, WAKE_SLICE_S)))[0]:
                    events = []
                    for ref in ray.wait(refs, num_returns=len(refs), timeout=0)[0]:  # every result already in
                        event = self._result(ref)
                        if event is not None:
                            events.append(event)
                    return events
                woken = self._selector.select(0)
            if woken:
                self._waker.clear()
                return []
            if left <= 0:
                return []

    def _result(self, ref) -> tuple[_Actor, tuple] | None:
        import ray

        handle, task, kv = self._refs.pop(ref)
        if handle.gone:
            return None  # from an actor since lost or stopped: its calls were dealt with then
        try:
            message = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            handle.gone = True
            if task is None:
                return handle, ("broken", f"could not start on Ray: {exc}")
            return handle, ("lost",)
        except ray.exceptions.RayTaskError as exc:  # a bug in the actor's transport: fails that call only
            message = ("failed", task, f"{type(exc).__name__}: {exc}", b"", 0.0, 0.0, 0.0, None)
        if kv is not None and message[0] == "done":
            message = (*message[:2], (replace(message[2][0], ref=kv), *message[2][1:]), *message[3:])
        return handle, message

    def stop(self, handles: list[_Actor]) -> None:
        for handle in handles:
            self.kill(handle)
            handle.gone = True

    def kill(self, handle: _Actor) -> None:
        import ray

        ray.kill(handle.actor, no_restart=True)

    def wake(self) -> None:
        self._waker.wake()

    def close(self) -> None:
        self._selector.close()
        self._waker.close()
        if self._owns_ray:
            import_ray().shutdown()


class RayEngine(Engine):
    """The router over Ray actors (`RayTransport`)."""

    def __init__(self, program: Program, workers: list[WorkerPlan], options: EngineOptions,
                 kernels_of: Callable[[WorkerPlan], tuple] | None = None, address: str | None = None):
        super().__init__(program, workers, options, kernels_of,
                         transport=RayTransport(options.run_id, address))

    def node_of(self, worker: str) -> str:
        """The Ray node id a worker's actor runs on (for tests and reports)."""
        return self.transport.node_of(next(w for w in self.workers if w.plan.name == worker).handle)
