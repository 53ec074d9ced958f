"""Transports: how the router's calls reach workers and their answers come back (`spec/runtime.md`, "Router and
transports").

A transport starts workers (`spawn`), sends them calls (`send`) and cancellations (`cancel`), reports what they
say (`poll`), and stops them: `stop` asks and waits, `kill` ends one at once, as a crash would. A worker is known to
the router by the handle `spawn` returned; everything else about it (the calls it holds, whether it is ready, its
restarts) is the router's. `poll` returns (handle, message) pairs: the worker's own messages (`worker.py`:
ready, broken, tokens, done, failed) and, once, `("lost",)` when the worker has died — after every message it sent
before dying. A handle that was stopped or lost reports nothing more.

Two transports: `ProcessTransport` (here: a process per worker and a pipe) and `RayTransport` (`ray_engine.py`:
an actor per worker, results as object refs).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import warnings
from typing import Any, Protocol

from hetagent.backend.executor import Call
from hetagent.runtime.channel import Channel, channel_pair
from hetagent.runtime.layout import WorkerPlan
from hetagent.runtime.worker import WorkerSpec, worker_main

STOP_WAIT_S = 5.0  # `stop`: a worker still running this long after being asked is killed


class Transport(Protocol):
    streams_tokens: bool  # whether workers' per-step token reports reach the router (`Call.stream`)

    def spawn(self, plan: WorkerPlan, spec: WorkerSpec) -> Any:
        """Start a worker; its handle. It reports ("ready",) or ("broken", why) through `poll` once started."""

    def send(self, handle: Any, call: Call) -> None:
        """Send a call (never blocks, never raises for a dead worker: `poll` reports it lost)."""

    def cancel(self, handle: Any, tasks: tuple[int, ...]) -> None:
        """Ask a worker to drop calls it holds: each it still had answers ("failed", task, "cancelled", ...)."""

    def poll(self, timeout: float) -> list[tuple[Any, tuple]]:
        """What workers said within `timeout` s: returns at the first message, or at once after `wake()`."""

    def stop(self, handles: list) -> None:
        """Stop workers (they finish nothing more); kill those that do not stop."""

    def kill(self, handle: Any) -> None:
        """End a worker at once, as a crash would: `poll` then reports it lost."""

    def capacity(self, plan: WorkerPlan) -> int:
        """How many workers of `plan` can run at once."""

    def wake(self) -> None:
        """Make a `poll` waiting in another thread return now: the one method safe to call from any thread."""

    def close(self) -> None:
        """Release the transport (after `stop`)."""


class Waker:
    """A pipe whose read end its owner watches (`fileno()`): `wake()` from any thread ends that wait."""

    def __init__(self):
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)

    def fileno(self) -> int:
        return self.r

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: wake-ups are pending already
            os.write(self.w, b"w")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.r, 4096)

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class _Process:
    __slots__ = ("conn", "process", "gone", "full")

    def __init__(self, conn: Channel, process):
        self.conn, self.process, self.gone = conn, process, False
        self.full = False  # its pipe took less than we sent: the epoll watches it for room


# what a descriptor in the transport's epoll is: the router's own path back, run once per result with every cache
# cold from the worker's kernels, is a dict lookup and a comparison (`selectors` adds a layer of Python calls)
_WAKER, _INBOX, _OUTBOX, _SENTINEL = range(4)

# A worker's malloc asks for transparent huge pages (glibc's tunable: `madvise` on its heap), which is where IREE
# allocates the kernels' resident, packed weights. In 4 KB pages every step's weight stream missed the TLB page
# after page (in a VM each miss a two-level walk): a small-llama decode step took 16.1-17.5 ms, in huge pages
# 15.8-16.1. glibc reads it when the process starts; other C libraries, and hosts with THP off, ignore it.
WORKER_TUNABLES = "glibc.malloc.hugetlb=1"


@contextlib.contextmanager
def _worker_environment():
    """`WORKER_TUNABLES` in the environment while a worker process starts (spawn passes the parent's on); a
    `GLIBC_TUNABLES` the user set keeps their tunables, and their huge-page choice where they made one."""
    before = os.environ.get("GLIBC_TUNABLES")
    if before is not None and "glibc.malloc.hugetlb=" in before:
        yield
        return
    os.environ["GLIBC_TUNABLES"] = f"{before}:{WORKER_TUNABLES}" if before else WORKER_TUNABLES
    try:
        yield
    finally:
        if before is None:
            del os.environ["GLIBC_TUNABLES"]
        else:
            os.environ["GLIBC_TUNABLES"] = before


class ProcessTransport:
    """A worker process per worker on this node, spoken to through a channel (`channel.py`: two pipes)."""

    streams_tokens = True

    def __init__(self):
        self._mp = multiprocessing.get_context("spawn")  # the parent runs threads (progress bar): never fork it
        # One epoll over every worker's pipe and process sentinel, registered once: building a selector per wait,
        # as `multiprocessing.connection.wait` and `Connection.poll` do, costs tens of µs per result.
        self._epoll = select.epoll()
        self._watched: dict[int, tuple[int, _Process | None]] = {}  # fd -> (what it is, its worker)
        self._waker = Waker()
        self._watch(self._waker.fileno(), select.EPOLLIN, _WAKER, None)

    def _watch(self, fd: int, events: int, role: int, handle: _Process | None) -> None:
        self._epoll.register(fd, events)
        self._watched[fd] = (role, handle)

    def _drop(self, fd: int) -> None:
        self._epoll.unregister(fd)
        del self._watched[fd]

    def spawn(self, plan: WorkerPlan, spec: WorkerSpec) -> _Process:
        conn, child = channel_pair()
        conn.never_block()  # `send` must not block: the router serves every worker
        process = self._mp.Process(target=worker_main, args=(child, spec), name=f"hetagent-{plan.name}", daemon=True)
        with _worker_environment():
            process.start()
        child.close()
        handle = _Process(conn, process)
        self._watch(conn.fileno(), select.EPOLLIN, _INBOX, handle)
        self._watch(process.sentinel, select.EPOLLIN, _SENTINEL, handle)
        return handle

    def send(self, handle: _Process, call: Call) -> None:
        self._send(handle, ("call", call))

    def cancel(self, handle: _Process, tasks: tuple[int, ...]) -> None:
        self._send(handle, ("cancel", tasks))

    def _send(self, handle: _Process, message: tuple) -> None:
        try:
            if not handle.conn.send(message) and not handle.full:  # `poll` writes the rest once there is room
                handle.full = True
                self._watch(handle.conn.outbox, select.EPOLLOUT, _OUTBOX, handle)
        except OSError:
            pass  # the worker is dead: its sentinel fires and `poll` reports it lost

    def poll(self, timeout: float) -> list[tuple[_Process, tuple]]:
        events = []
        for fd, _ in self._epoll.poll(timeout):
            role, handle = self._watched.get(fd, (None, None))  # None: dropped by an earlier event of this poll
            if role == _INBOX:
                if handle.gone:
                    continue
                # one read: every complete message it holds (a partly read one stays buffered until the rest comes)
                try:
                    events.append((handle, handle.conn.recv()))
                    while handle.conn.pending():
                        events.append((handle, handle.conn.recv()))
                except (EOFError, OSError):
                    continue  # the process ended; its sentinel reports it
            elif role == _WAKER:  # `wake()` (bytes left over wake the next poll again)
                self._waker.clear()
            elif role == _OUTBOX:  # room in a pipe that was full
                try:
                    if handle.conn.flush():
                        self._unwatch(handle)
                except OSError:
                    self._unwatch(handle)  # the process ended; its sentinel reports it
            elif role == _SENTINEL and not handle.gone and not handle.process.is_alive():
                try:
                    while True:  # what it said before it died comes first; its end is closed, so this ends
                        events.append((handle, handle.conn.recv()))
                except (EOFError, OSError):
                    pass
                events.append((handle, ("lost",)))
                self._forget(handle)
                handle.process.join(timeout=1)
        return events

    def stop(self, handles: list[_Process]) -> None:
        live = [h for h in handles if not h.gone]
        for handle in live:
            try:
                handle.conn.send(("stop",))
            except OSError:
                pass
        for handle in live:
            handle.process.join(timeout=STOP_WAIT_S)
            if handle.process.is_alive():
                handle.process.kill()
                handle.process.join(timeout=STOP_WAIT_S)  # gone before its run's segments are removed
            elif handle.process.exitcode:  # its results are in, but a crash on the way out is a bug to see
                code = handle.process.exitcode
                how = f"signal {signal.strsignal(-code) or -code}" if code < 0 else f"exit status {code}"
                warnings.warn(f"worker process {handle.process.name} ended with {how} after it was stopped",
                              stacklevel=2)
            self._forget(handle)

    def kill(self, handle: _Process) -> None:
        handle.process.kill()

    def capacity(self, plan: WorkerPlan) -> int:
        return max(1, len(plan.cores))  # one per core of a CPU partition, one per device

    def wake(self) -> None:
        self._waker.wake()

    def close(self) -> None:
        self._epoll.close()
        self._waker.close()

    def _unwatch(self, handle: _Process) -> None:
        if handle.full:
            handle.full = False
            self._drop(handle.conn.outbox)

    def _forget(self, handle: _Process) -> None:
        handle.gone = True
        self._unwatch(handle)
        self._drop(handle.conn.fileno())
        self._drop(handle.process.sentinel)
        handle.conn.close()
