"""A worker process: one device, its executors, and a deadline-ordered queue.

The engine sends `("call", Call)` messages; the worker keeps them in an earliest-deadline-first queue and
loops: take every message waiting, join queued stepped calls (decode) while their executor has free slots, run
one step of every executor with joined sequences, then run the most urgent one-shot call together with the
compatible calls queued behind it (same op and kernel, up to the executor's batch). Results go back as
`("done", task, values, token_times, queue_s, run_s, kv_s, finish_reason)` or
`("failed", task, message, b"", queue_s, run_s, 0.0, None)`: the `Outcome` taken apart into builtins, with
`token_times` as the bytes of native float64s (the values are the op's own: a decode's text is a `str`, a prefill's
first value its `KVHandle`). Every result crosses on the critical path with both processes'
caches cold from the worker's kernels, and there each class in a message costs the pickler and the unpickler
40-90 µs apiece (its reduce and reconstruction code, run cold), where a message of builtins costs 35-55 µs in
all: a decode's result with its times as an `array("d")` and its text as a `str` subclass carrying the finish
reason took 150 µs to pickle and 160 µs to unpickle there, 45 and 55 µs as now (`spec/runtime.md`, "Worker
messages").

`("cancel", tasks)` drops those calls (the router no longer wants them: their request was cancelled): a queued one
at once, a joined stepped one where its executor can let it go (`leave`); each dropped call is answered
`("failed", task, "cancelled", ...)`. A call already running to its end is answered as usual.

A stepped call with `stream` set (the answer's decode of a streamed request) is also reported as it runs: after
a step, one `("tokens", ((task, token_ids), ...))` message carries the tokens each such call generated since its
last report (its executor's `progress`), always before that call's result — after every step, except that steps
faster than `STREAM_REPORT_S` share a message (a call's first tokens always go at once): each message costs the
router and the server a wake-up, which on a small host slows the decode itself. Tokens of the step that ends a
call come with its result (the whole text). Calls without the flag cost nothing.
"""

from __future__ import annotations

import contextlib
import heapq
import importlib
import itertools
import os
import selectors
import signal
import time
import traceback
from array import array
from dataclasses import dataclass

from hetagent.backend.executor import Call, WorkerContext

STREAM_REPORT_S = 0.005  # the least time between two token reports (a GPU's decode step is longer: each its own)


@dataclass(frozen=True)
class WorkerSpec:
    context: WorkerContext
    factories: dict[str, str]  # op -> "module:Class"


class DeadlineQueue:
    """Calls by deadline, then arrival (EDF); `take` removes the first call matching a test."""

    def __init__(self):
        self._heap: list = []
        self._order = itertools.count()

    def push(self, call: Call, arrived: float) -> None:
        heapq.heappush(self._heap, (call.deadline, next(self._order), call, arrived))

    def __len__(self) -> int:
        return len(self._heap)

    def take(self, wanted, limit: int = 1) -> list[tuple[Call, float]]:
        """Up to `limit` (call, arrival) pairs satisfying `wanted`, most urgent first."""
        chosen, kept = [], []
        while self._heap and len(chosen) < limit:
            entry = heapq.heappop(self._heap)
            (chosen if wanted(entry[2]) else kept).append(entry)
        for entry in kept:
            heapq.heappush(self._heap, entry)
        return [(entry[2], entry[3]) for entry in chosen]


def _build(factories: dict[str, str], context: WorkerContext) -> dict[str, object]:
    instances: dict[str, object] = {}
    by_op = {}
    for op, factory in factories.items():
        if factory not in instances:
            module, _, name = factory.partition(":")
            instances[factory] = getattr(importlib.import_module(module), name)(context)
        by_op[op] = instances[factory]
    return by_op


def _pin_threads(cores: tuple[int, ...]) -> None:
    """Pin every thread of this process to `cores`, not only the calling one: imports and executors have started
    thread pools (numpy's BLAS, IREE's task system, which resets its workers' affinity) that would otherwise run
    on the other partitions' cores. Threads started later inherit the mask. The BLAS and OpenMP pools, sized from
    the whole machine at import, shrink to the cores: two BLAS threads spinning on one core made the speech
    stand-in's transcription 6.5x slower (144 vs 22 ms).

    IREE's task workers (one per core: `backend/iree.py`) get a core each: under the whole mask a worker woke its
    sibling onto its own core whenever the other core was idle (a guest kernel takes a halted vCPU for a preempted
    one and will not place a task there), so a tiny-llama decode step ran both workers on one core while the
    other idled (seen with `perf sched`); one core each took the step from 450-490 to 375-400 µs."""
    from threadpoolctl import threadpool_limits

    for thread in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(thread), _thread_cores(thread, cores))
    threadpool_limits(len(cores))


def _thread_cores(thread: str, cores: tuple[int, ...]) -> tuple[int, ...]:
    """The cores one thread of the worker runs on: IREE's task worker n (named `iree-worker-<n>`) the n-th core,
    every other thread all of them."""
    with open(f"/proc/self/task/{thread}/comm") as comm:
        name = comm.read().strip()
    index = name.removeprefix("iree-worker-")
    return (cores[int(index) % len(cores)],) if index != name and index.isdigit() else cores


def worker_main(conn, spec: WorkerSpec) -> None:
    # Ctrl-C reaches the whole process group; the engine stops its workers itself (a "stop" message), after
    # failing or finishing what they hold, so a worker must not die of it first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    run_worker(conn, spec)


def run_worker(conn, spec: WorkerSpec) -> None:
    """The worker loop: in a worker process (`worker_main`), or in a thread of a Ray actor (RayTransport)."""
    try:
        executors = _build(spec.factories, spec.context)
    except Exception as exc:  # a backend that cannot start: the engine reports it and stops
        conn.send(("broken", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
        return
    if spec.context.cores and hasattr(os, "sched_setaffinity"):
        _pin_threads(spec.context.cores)
    conn.send(("ready",))
    queue = DeadlineQueue()
    joined: dict[int, tuple[float, float, Call]] = {}  # task -> (arrival, time it joined a stepped executor, call)
    streaming: dict[int, list] = {}  # task -> [its executor, the call, tokens reported]: joined calls with `stream`
    reported = 0.0  # when the last token report went out
    stepped = {id(e): e for e in executors.values() if e.stepped_ops}.values()

    def is_stepped(call: Call) -> bool:
        return call.op in executors[call.op].stepped_ops

    def send_result(call: Call, result, queued: float, started: float) -> None:
        now = time.monotonic()
        if isinstance(result, Exception):
            conn.send(("failed", call.task, f"{type(result).__name__}: {result}", b"", started - queued,
                       now - started, 0.0, None))
        else:
            conn.send(("done", call.task, result.values, array("d", result.token_times).tobytes(), started - queued,
                       now - started, result.kv_s, result.finish_reason))

    def cancel(tasks: tuple[int, ...]) -> None:
        wanted = set(tasks)
        dropped = [call for call, _ in queue.take(lambda c: c.task in wanted, limit=len(wanted))]
        for task in wanted & joined.keys():
            call = joined[task][2]
            leave = getattr(executors[call.op], "leave", None)
            if leave is not None and leave(call):
                del joined[task]
                streaming.pop(task, None)
                dropped.append(call)
        for call in dropped:
            conn.send(("failed", call.task, "cancelled", b"", 0.0, 0.0, 0.0, None))

    # registered once: `conn.poll` builds a selector per call, and the loop checks for messages every decode step
    inbox = selectors.DefaultSelector()
    inbox.register(conn, selectors.EVENT_READ)
    while True:
        busy = len(queue) > 0 or any(e.active() for e in stepped)
        while conn.pending() or inbox.select(0 if busy else None):
            message = conn.recv()
            if message[0] == "stop":
                return
            if message[0] == "cancel":
                cancel(message[1])
                continue
            queue.push(message[1], message[1].sent)
            busy = True
        for call, arrived in queue.take(lambda c: is_stepped(c) and executors[c.op].free_slots(c) > 0, limit=1 << 20):
            if executors[call.op].free_slots(call) <= 0:
                queue.push(call, arrived)
                continue
            joined[call.task] = (arrived, time.monotonic(), call)
            executors[call.op].join(call)
            if call.stream and hasattr(executors[call.op], "progress"):
                streaming[call.task] = [executors[call.op], call, 0]
        for executor in stepped:
            if executor.active():
                for call, result in executor.step():
                    arrived, started, _ = joined.pop(call.task)
                    send_result(call, result, arrived, started)
                    streaming.pop(call.task, None)  # its result carries the whole text
        if streaming and (time.monotonic() - reported >= STREAM_REPORT_S or any(e[2] == 0 for e in streaming.values())):
            report = []
            for task, entry in streaming.items():
                executor, call, sent = entry
                tokens = executor.progress(call)
                if len(tokens) > sent:
                    report.append((task, tuple(tokens[sent:])))
                    entry[2] = len(tokens)
            if report:
                conn.send(("tokens", tuple(report)))
                reported = time.monotonic()
        first = queue.take(lambda c: not is_stepped(c))
        if not first:
            continue
        call, arrived = first[0]
        executor = executors[call.op]
        key = (call.op, call.kernel)
        batch = [(call, arrived)] + queue.take(lambda c: (c.op, c.kernel) == key, limit=executor.max_batch(call) - 1)
        started = time.monotonic()
        try:
            results = executor.run([c for c, _ in batch])
        except Exception as exc:  # an executor bug fails the calls it was given, not the worker
            results = [exc] * len(batch)
        for (c, a), result in zip(batch, results):
            send_result(c, result, a, started)
