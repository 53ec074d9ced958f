"""`RayEngine`: LocalEngine's router, with its workers as actors on a Ray cluster (extra `hetagent[ray]`).

The program, the worker plans and the workers are LocalEngine's; only the transport differs:

- a worker is an actor (`WorkerActor`) that runs the very loop of a worker process (`run_worker`: deadline
  queue, continuous batching, the backend's executors) in a thread, fed through a pipe inside the actor's process;
- a call is an actor method call, its result an ObjectRef that the router waits on with `ray.wait`; a dead actor
  surfaces as an error on those refs, and the router restarts it and retries its calls as it does a dead process;
- a KV cache crosses nodes through the object store as one buffer in the `spec/kv-format.md` layout: the prefill's
  actor returns it as the call's second return value — owned by the router, so a cache outlives the actor that
  wrote it and a retried decode can read it again — and the decode's actor copies it into a shared-memory segment
  on its node for the executor. The router drops its reference when the request ends, which frees it.

Placement: one actor pool per worker plan — one per device class; the host CPU's partitions one each. An actor
holds its plan's Ray resources (a device's profile names a custom resource, `ray_resource`, one per device: start
a node with `ray start --resources '{"h100-sxm": 8}'`) and one CPU per core of its partition (one for a device's
worker). Every actor loads the same backends as the driver (`Registry`) and refuses to start on a node that lacks
its backend, runs another version of it, or does not detect its device.

Without `address` the engine starts a fresh local cluster (`ray.init(address="local")`): a bare `ray.init()` would
silently join whatever cluster this node last ran (or `RAY_ADDRESS`), and hang if that one is gone. `address`
joins a cluster (`"auto"`: the one `ray start` made on this node); a driver that initialised Ray itself keeps it.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hetagent.errors import HetagentError
from hetagent.backend.registry import Registry, requested_backends
from hetagent.runtime.engine import EngineOptions, LocalEngine
from hetagent.backend.executor import Call
from hetagent.runtime.layout import WorkerPlan
from hetagent.runtime.program import Program
from hetagent.runtime.ray_worker import WorkerActor

KV_WRITERS = frozenset({"llm.prefill"})  # ops whose first result is a KV cache
WAKE_SLICE_S = 0.005  # ray.wait cannot be interrupted: a `wake()` is seen within this long


def import_ray():
    try:
        import ray
    except ImportError:
        raise HetagentError("the Ray engine needs Ray: install hetagent[ray] (pip install 'hetagent[ray]')") from None
    return ray


# ---------------------------------------------------------------------------------------------------- the router

class _RayWorker:
    """One actor of a pool as the router sees it: the fields of a worker process's `_Worker`."""

    def __init__(self, plan: WorkerPlan, start: Callable[[_RayWorker], Any]):
        self.plan, self._start = plan, start
        self.tasks: dict = {}
        self.ready = False
        self.restarts = 0
        self.generation = 0  # refs of an earlier actor (killed, restarted) are ignored
        self.actor = start(self)

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.ready = False
        self.actor = self._start(self)

    def stop(self) -> None:
        import ray

        ray.kill(self.actor, no_restart=True)
        self.generation += 1


class RayEngine(LocalEngine):
    # A call's only way back is its one result ref, so workers' per-step token reports have no channel to the
    # router: streamed requests stream at answer level here (their decodes are sent without `Call.stream`).
    streams_tokens = False

    def __init__(self, program: Program, workers: list[WorkerPlan], device_of: dict[int, str], options: EngineOptions,
                 kernels_of: Callable[[WorkerPlan], tuple] | None = None, address: str | None = None):
        ray = import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:  # a local cluster, or join `address`; actors' output stays in Ray's logs
            with warnings.catch_warnings():
                # Ray announces that it will stop hiding GPUs from actors that ask for none; its present behaviour
                # is the one wanted (a CPU worker sees no GPU), and the notice would land in every run's output
                warnings.filterwarnings("ignore", "Tip: In future versions of Ray", FutureWarning)
                ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, configure_logging=False)
        self._actor_class = ray.remote(WorkerActor)
        self._backends = requested_backends()
        registry = Registry.load(self._backends)
        self._versions = {b.name: b.info.version for b in registry.active()}
        self._refs: dict = {}  # pending ref -> (worker, its generation, task id or None for `ready`, KV ref)
        try:
            for plan in workers:
                self._check_capacity(plan)
            super().__init__(program, workers, device_of, options, kernels_of)
        except BaseException:  # e.g. a worker that cannot start: its siblings must not outlive the engine
            self._stop(getattr(self, "workers", []))
            self._shutdown()
            raise

    # ------------------------------------------------------------------------------------------ placement

    def _demand(self, plan: WorkerPlan) -> dict[str, float]:
        """The Ray resources one worker of `plan` holds."""
        return {"CPU": float(max(1, len(plan.cores))), **plan.resources}

    def capacity(self, pool: str) -> int:
        """How many workers of a pool the cluster's live nodes hold at once (whatever else runs there)."""
        return self._fits(self.plans[pool])

    def _fits(self, plan: WorkerPlan) -> int:
        import ray

        demand = self._demand(plan)
        return sum(min(int(node["Resources"].get(r, 0) // need) for r, need in demand.items())
                   for node in ray.nodes() if node["Alive"])

    def _check_capacity(self, plan: WorkerPlan) -> None:
        import ray

        if self._fits(plan) < 1:
            offered = ", ".join(f"{k}: {v:g}" for k, v in sorted(ray.cluster_resources().items())
                                if not k.startswith(("node:", "memory", "object_store")))
            demand = self._demand(plan)
            wanted = ", ".join(f"{k}: {v:g}" for k, v in demand.items())
            hint = (f"ray start --resources '{json.dumps(dict.fromkeys(plan.resources, 1))}'" if plan.resources
                    else f"ray start --num-cpus {demand['CPU']:g}")
            raise HetagentError(f"worker {plan.name} ({plan.device}) needs Ray resources {{{wanted}}} on one node, "
                                f"and no live node of the cluster offers them (the cluster: {offered}); add a node "
                                f"that does, e.g. `{hint}`")

    def node_of(self, worker: str) -> str:
        """The Ray node id a worker's actor runs on (for tests and reports)."""
        import ray

        return ray.get(next(w for w in self.workers if w.plan.name == worker).actor.node.remote())

    # ------------------------------------------------------------------------------------------ transport

    def _spawn(self, plan: WorkerPlan) -> _RayWorker:
        return _RayWorker(plan, self._start_actor)

    def _start_actor(self, worker: _RayWorker):
        plan = worker.plan
        demand = self._demand(plan)
        actor = self._actor_class.options(
            num_cpus=demand.pop("CPU"), num_gpus=demand.pop("GPU", 0), resources=demand,
            max_restarts=0,  # the router restarts it, retrying its calls
            name=f"hetagent-{self.options.run_id}-{plan.name}-{worker.generation}",
        ).remote(self._spec(plan), plan.backend, None if not plan.resources else plan.device, self._backends,
                 self._versions)
        self._refs[actor.ready.remote()] = (worker, worker.generation, None, None)
        return actor

    def _send(self, worker: _RayWorker, call: Call) -> None:
        if call.op in KV_WRITERS:
            ref, kv = worker.actor.run_kv.options(num_returns=2).remote(call)
        else:
            ref, kv = worker.actor.run.remote(call), None
        self._refs[ref] = (worker, worker.generation, call.task, kv)

    def _stop(self, workers: list[_RayWorker]) -> None:
        for worker in workers:
            worker.stop()

    def kill_worker(self, name: str) -> None:
        """Kill a worker's actor (its process), as a crash would: for fault tests."""
        import ray

        ray.kill(next(w for w in self.workers if w.plan.name == name).actor, no_restart=True)

    def _poll(self, timeout: float) -> None:
        import ray

        limit = time.monotonic() + timeout
        while True:
            left = limit - time.monotonic()
            if not self._refs:
                woken = self._selector.select(max(0.0, left))
            else:
                refs = list(self._refs)
                if ray.wait(refs, num_returns=1, timeout=max(0.0, min(left, WAKE_SLICE_S)))[0]:
                    for ref in ray.wait(refs, num_returns=len(refs), timeout=0)[0]:  # every result already in
                        self._result(ref)
                    return
                woken = self._selector.select(0)  # only `wake()`'s pipe is registered here
            if woken:
                os.read(self._wake_r, 4096)
                return
            if left <= 0:
                return

    def _result(self, ref) -> None:
        import ray

        worker, generation, task, kv = self._refs.pop(ref)
        if generation != worker.generation:
            return  # from an actor since restarted or retired: its calls were dealt with then
        try:
            message = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if task is None:
                raise HetagentError(f"worker {worker.plan.name} could not start on Ray: {exc}") from None
            self._lost(worker)
            return
        except ray.exceptions.RayTaskError as exc:  # a bug in the actor's transport: fails that call only
            message = ("failed", task, f"{type(exc).__name__}: {exc}", (), 0.0, 0.0, 0.0)
        if kv is not None and message[0] == "done":
            message = (*message[:2], (replace(message[2][0], ref=kv), *message[2][1:]), *message[3:])
        self._message(worker, message)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._owns_ray:
            import_ray().shutdown()
