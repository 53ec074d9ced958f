"""The actor side of RayEngine (`spec/runtime.md` section 8): a worker as a Ray actor. The router's side, which
places and calls these actors, is `ray_engine.py` (`RayTransport`).

The actor runs the very loop of a worker process (`run_worker`: deadline queue, continuous batching, the backend's
executors) in a thread and feeds it through a pipe inside its process; its methods are the worker's mailbox. KV
caches arrive as `RemoteKV` (the buffer in the object store, spec/kv-format.md layout) and are copied into this
node's shared memory for the executor; a prefill's cache leaves as the call's second return value.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
import traceback
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hetagent.backend.registry import Registry
from hetagent.backend import kv_format
from hetagent.backend.executor import Call
from hetagent.runtime.channel import channel_pair
from hetagent.runtime.worker import WorkerSpec, run_worker


@dataclass(frozen=True)
class RemoteKV:
    """A KV cache in the Ray object store: what travels in place of a `KVHandle` between nodes."""

    header: kv_format.KVHeader
    ref: Any  # ray.ObjectRef of the buffer (header and chunks, spec/kv-format.md)


# ---------------------------------------------------------------------------------------------------- the actor

class WorkerActor:
    """One worker on a Ray node: the worker loop in a thread, the actor's methods its mailbox."""

    def __init__(self, spec: WorkerSpec, backend: str, device: str | None, backends: list[str] | None,
                 versions: dict[str, str]):
        """`device`: the device to find on this node (None: the host CPU, always there); `backends`, `versions`:
        the driver's."""
        self.run_id = spec.context.run_id
        self.conn, loop_end = channel_pair()
        self.waiting: dict[int, concurrent.futures.Future] = {}  # task -> its result message
        self.started: concurrent.futures.Future = concurrent.futures.Future()  # ("ready",) or ("broken", why)
        problem = _node_problem(device, backend, backends, versions)
        if problem:
            self.started.set_result(("broken", f"on {socket.gethostname()}: {problem}"))
            return
        threading.Thread(target=_loop, args=(loop_end, spec), daemon=True, name="hetagent-worker").start()
        threading.Thread(target=self._read, daemon=True, name="hetagent-results").start()

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return
            if message[0] in ("ready", "broken"):
                self.started.set_result(message)
            elif message[0] == "tokens":  # a streamed call's progress: RayTransport never asks for it (no channel)
                continue
            else:
                self.waiting.pop(message[1]).set_result(message)

    async def ready(self) -> tuple:
        return await asyncio.wrap_future(self.started)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    async def run(self, call: Call) -> tuple:
        """Run one call; its result message, as a worker process sends it."""
        copies, inputs = [], []
        for value in call.inputs:
            if isinstance(value, RemoteKV):  # a cache from another node: into this node's shared memory
                segment = kv_format.segment_name(self.run_id, call.task)
                value = kv_format.write_buffer(await value.ref, segment)
                copies.append(segment)
            inputs.append(value)
        future = concurrent.futures.Future()
        self.waiting[call.task] = future
        self.conn.send(("call", replace(call, inputs=tuple(inputs))))
        try:
            return await asyncio.wrap_future(future)
        finally:
            for segment in copies:
                kv_format.unlink(segment)

    def cancel(self, tasks: tuple[int, ...]) -> None:
        """Have the loop drop these calls: each it still held answers "cancelled" on its own `run`."""
        self.conn.send(("cancel", tasks))

    async def run_kv(self, call: Call) -> tuple:
        """Run a call whose first result is a KV cache: (message, the cache's buffer); the message holds a
        `RemoteKV` whose ref the router fills in with the second return value."""
        message = await self.run(call)
        if message[0] != "done":
            return message, None
        handle, *rest = message[2]
        buffer = np.frombuffer(kv_format.read_buffer(handle), dtype=np.uint8)  # zero-copy into the object store
        kv_format.unlink(handle.segment)
        return (message[0], message[1], (RemoteKV(handle.header, None), *rest), *message[3:]), buffer


def _loop(conn, spec: WorkerSpec) -> None:
    try:
        run_worker(conn, spec)
    except BaseException:  # a dead loop must look like a dead worker process: the router restarts it, retrying
        traceback.print_exc()
        os._exit(1)


def _node_problem(device: str | None, backend: str, backends: list[str] | None, versions: dict[str, str]) -> str:
    """Why this node cannot run the worker (its backends must be the driver's), or ''."""
    registry = Registry.load(backends)
    here = {b.name: b.info.version for b in registry.active()}
    if backend not in here:
        return f"backend {backend!r} is not installed (install hetagent-{backend} on every node)"
    if here[backend] != versions[backend]:
        return f"backend {backend!r} is version {here[backend]} here, {versions[backend]} on the driver"
    if device is not None:
        present = {d.profile for det in registry.detect() if det.available for d in det.devices}
        if device not in present:
            return f"device {device} is not present (found: {', '.join(sorted(present)) or 'none'})"
    return ""
