"""The engine: a router (this module) over a transport (`transport.py`: worker processes; `ray_engine.py`: Ray
actors). `spec/runtime.md`, "Router and transports".

The router runs each request's program: an op is dispatched as soon as its operands are ready, to a worker
serving that op on the op's device — the one that last held the request's KV cache if it can, else the least
loaded. `control.loop` and `control.branch` are evaluated here when reached (predicates by name,
`hetagent.backend.transforms`); input ops take the request's payload; `kv.transfer` passes the handle of the
shared-memory cache (`spec/kv-format.md`), whose bytes the decode worker copies in. The transport only carries
calls and answers: starting, stopping and replacing workers, pools and retries are the router's.

Admission control: a request arriving while `max_inflight` are in flight, or (policy "sla") whose predicted
end-to-end time exceeds its SLA, is rejected at once with a typed `Rejection` ("limit" or "sla"). Nothing accepted
is dropped: a worker that dies has its in-flight calls retried (on its replacement or another worker serving the
op) up to `max_attempts` times, after which the request ends with an explicit error; an op that fails (a tool
timing out) fails only its own request. `cancel` ends a request at once and has its workers drop its calls.

Streaming: for a request submitted with `stream`, the decode whose text is the agent's answer (`answer_decode`)
is dispatched with `Call.stream` (where the transport carries token reports); its worker reports the tokens as
the steps make them (the last step's come with the result, as text), and the engine hands them on to
`on_tokens(request_id, token_ids)` — each position once, so a decode retried after its worker died does not
repeat the tokens already handed on (sampling is deterministic: the retry produces them again).

Readers outside the engine (the server) use `snapshot()`, `take_ops()` and the callbacks, never its fields.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable

from hetagent.errors import HetagentError
from hetagent.backend import kv_format
from hetagent.backend.executor import Call, WorkerContext
from hetagent.backend.text import Sampling
from hetagent.runtime import prefix_routing, segments
from hetagent.runtime.layout import ENGINE_OPS, WorkerPlan
from hetagent.runtime.program import Block, Node, Program, answer_decode
from hetagent.backend.transforms import predicate, transform
from hetagent.runtime.transport import ProcessTransport, Transport
from hetagent.runtime.worker import WorkerSpec

START_TIMEOUT_S = 180.0
RATE_WINDOW_S = 5.0  # admission measures the departure rate over the requests that ended this recently
# Admission admits a request predicted to take at most this share of its SLA: the prediction is a mean, and a
# request admitted right at the SLA misses it about half the time.
ADMIT_SLA_SHARE = 0.7


@dataclass
class EngineOptions:
    run_id: str
    cache_dir: str
    model_dir: str | None = None
    corpus: str | None = None
    stores: dict[str, str] = field(default_factory=dict)
    http_tools: dict[str, str] = field(default_factory=dict)
    temperature: float = 0.0
    max_inflight: int = 64
    admission: str = "sla"  # "sla": also reject requests predicted to miss their SLA; "limit": only max_inflight
    max_attempts: int = 3
    sla_ms: float | None = None  # overrides the agent's sla_ms
    # a worker holding calls that sends nothing for this long (hung, stopped) is killed, replaced, its calls retried
    watchdog_s: float = 120.0
    # each prefill worker keeps this much KV of recent prompt prefixes and reuses it (0: no prefix cache)
    prefix_cache_mb: float = 256.0


@dataclass
class Request:
    id: int
    payload: dict  # "query": text, "audio": samples
    arrival: float  # offset in seconds from the start of the run
    seed: int = 0
    stream: bool = False  # report the answer's tokens as they are generated (`on_tokens`), when the agent allows
    sampling: Sampling | None = None  # its LLM calls' sampling (max_tokens and stop: the answer's only)


@dataclass
class OpRecord:
    request: int
    label: str
    op: str
    worker: str
    dispatched: float  # time.monotonic()
    finished: float
    queue_s: float
    run_s: float
    attempt: int
    ok: bool
    kv_bytes: int = 0
    kv_s: float = 0.0  # moving a KV cache between the device and the exchange layout (prefill: out, decode: in)
    route: str = ""  # kv.transfer: "<from device> -> <to device>"
    prompt_tokens: int = 0  # llm.prefill: the prompt as it ran
    cached_tokens: int = 0  # llm.prefill: of which the worker's prefix cache held the KV (not computed)


@dataclass(frozen=True)
class Rejection:
    """Why admission turned a request away: `kind` "limit" (`max_inflight` requests in flight: come back later) or
    "sla" (its predicted end-to-end time misses its SLA)."""

    kind: str
    reason: str


@dataclass
class RequestRecord:
    id: int
    arrival: float  # time.monotonic()
    deadline: float
    status: str = "running"  # ok | error | rejected | cancelled
    error: str = ""
    rejection: Rejection | None = None  # why admission turned it away (status "rejected")
    end: float = 0.0
    first_token: float | None = None  # of the last LLM call (the answer)
    gaps: list[float] = field(default_factory=list)  # time between tokens, every decode
    outputs: tuple = ()
    tokens: dict[str, list[str]] = field(default_factory=dict)  # decode label -> texts, per trip
    prompt_tokens: int = 0  # every prefill's prompt as it ran (after truncation to the kernel's capacity)
    cached_tokens: int = 0  # of which came from a worker's prefix cache (their KV reused, not computed)
    completion_tokens: int = 0  # every decode's tokens, the prefill's first sampled one included
    finish_reason: str = "stop"  # the answer's decode: "stop" (end of sequence, a stop string) or "length"


class _Frame:
    """One activation of a block: the top-level graph, a loop trip or a branch arm."""

    def __init__(self, block: Block, args: tuple, parent: "_Frame | None", owner: Node | None, trip: int = 1):
        self.block, self.parent, self.owner, self.trip = block, parent, owner, trip
        self.env: dict[int, Any] = dict(zip(block.args, args))
        self.started: set[int] = set()
        self.running = 0
        self.outputs: dict[str, list[tuple]] = {}  # op name -> results of each completion in this frame

    def has(self, value: int) -> bool:
        return value in self.env or (self.parent is not None and self.parent.has(value))

    def get(self, value: int):
        return self.env[value] if value in self.env else self.parent.get(value)


@dataclass
class _Live:
    request: Request
    record: RequestRecord
    top: _Frame
    segments: set[str] = field(default_factory=set)
    kv_home: str | None = None  # the worker that last held this request's KV cache
    streamed: int = 0  # answer tokens handed to `on_tokens` so far


@dataclass
class _Task:
    live: _Live | None  # None: a direct call (`execute`), outside any request
    frame: _Frame | None
    node: Node
    call: Call
    sent: float
    reported: int = 0  # tokens its worker has reported so far (a streamed call)


class _Worker:
    """A worker as the router sees it: its plan, its transport's handle, and the calls it holds."""

    __slots__ = ("plan", "handle", "tasks", "ready", "restarts", "heard")

    def __init__(self, plan: WorkerPlan, handle: Any):
        self.plan, self.handle = plan, handle
        self.tasks: dict[int, _Task] = {}
        self.ready = False
        self.restarts = 0
        self.heard = time.monotonic()  # its last message, or when it was given work while idle (the watchdog's clock)


@dataclass(frozen=True)
class EngineSnapshot:
    """What a caller may read of a running engine (the server's metrics): a copy, taken by `Engine.snapshot()`."""

    inflight: int  # requests admitted and not yet ended
    max_inflight: int
    calls: Mapping[str, int]  # calls each worker holds (sent, not yet answered), by worker name


class Engine:
    """The router over a transport: requests, admission, the graph, routing, retries, pools and accounting."""

    def __init__(self, program: Program, workers: list[WorkerPlan], options: EngineOptions,
                 kernels_of: Callable[[WorkerPlan], tuple] | None = None, *, transport: Transport):
        self.program, self.options, self.transport = program, options, transport
        self.ops: list[OpRecord] = []
        self.requests: dict[int, RequestRecord] = {}
        self.live: dict[int, _Live] = {}
        self.workers: list[_Worker] = []  # those the router sends work to
        self._retiring: list[_Worker] = []  # scaled down: they finish the calls they hold, then stop
        self._of_handle: dict[Any, _Worker] = {}
        try:
            _check_names(program)
            self._kernels_of = kernels_of
            segments.sweep()  # segments a killed run left behind
            self._run_lock = segments.RunLock(options.run_id)
        except BaseException:
            transport.close()
            raise
        self.plans = {plan.name: plan for plan in workers}  # worker plans by name: one pool of replicas each
        self._tasks = itertools.count()
        self._e2e_mean: float | None = None
        self._departures: deque[float] = deque()  # when requests ended, the last RATE_WINDOW_S
        self._direct: dict[int, tuple | str] = {}  # results of `execute` calls (values, or the error), by task
        self._prompts = prefix_routing.SentPrompts()  # what each worker's prefix cache likely holds
        self.on_finish: Callable[[RequestRecord], None] = lambda record: None
        # a streamed request's answer tokens as its final decode generates them (never for other requests)
        self.on_tokens: Callable[[int, tuple[int, ...]], None] = lambda request, tokens: None
        answer = answer_decode(program) if transport.streams_tokens else None
        self._answer_decode = None if answer is None else answer.index
        try:
            for plan in workers:
                self.workers.append(self._spawn(plan))
            self._await_ready()
        except BaseException:  # e.g. a worker that cannot start: its siblings must not outlive the engine
            self.close()
            raise

    # ------------------------------------------------------------------------------------------ lifecycle

    def _await_ready(self) -> None:
        limit = time.monotonic() + START_TIMEOUT_S
        while not all(w.ready for w in self.workers):
            if time.monotonic() > limit:
                raise HetagentError(f"workers did not start within {START_TIMEOUT_S:.0f} s")
            self._poll(1.0)

    def close(self) -> None:
        try:
            self.transport.stop([w.handle for w in self.workers + self._retiring])
            for live in list(self.live.values()):
                self._fail(live, "the engine stopped before the request finished")
        finally:
            self.transport.close()
            segments.remove_run(self.options.run_id)
            self._run_lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def kill_worker(self, name: str) -> None:
        """End a worker at once, as a crash would: for fault tests."""
        self.transport.kill(next(w for w in self.workers if w.plan.name == name).handle)

    def snapshot(self) -> EngineSnapshot:
        """The engine's state for a reader outside it (`spec/runtime.md`, "Snapshot")."""
        return EngineSnapshot(len(self.live), self.options.max_inflight,
                              MappingProxyType({w.plan.name: len(w.tasks) for w in self.workers}))

    def take_ops(self) -> list[OpRecord]:
        """The op records since the last take; the engine keeps none of them (a server runs for ever)."""
        ops, self.ops = self.ops, []
        return ops

    def forget(self, request: int) -> None:
        """Drop an ended request's record (`requests`): for a caller that keeps it itself."""
        self.requests.pop(request, None)

    # ------------------------------------------------------------------------------------------ pools

    def pools(self) -> dict[str, list[str]]:
        """The workers running each worker plan (its pool), by plan name; replicas past the first are `name#k`."""
        pools: dict[str, list[str]] = {name: [] for name in self.plans}
        for worker in self.workers:
            pools[_pool_of(worker.plan.name)].append(worker.plan.name)
        return pools

    def capacity(self, pool: str) -> int:
        """How many workers of a pool can run at once (the transport says: cores here, the cluster on Ray)."""
        return self.transport.capacity(self.plans[pool])

    def scale(self, pool: str, replicas: int) -> None:
        """Run `replicas` workers of plan `pool`: start more, or retire the least loaded. A retired worker gets no
        new calls and stops once it has answered those it holds, so scaling down loses nothing."""
        if pool not in self.plans or not 1 <= replicas <= self.capacity(pool):
            pools = ", ".join(f"{name} (1 to {self.capacity(name)})" for name in self.plans)
            raise HetagentError(f"cannot scale {pool!r} to {replicas} workers; the pools: {pools}")
        running = [w for w in self.workers if _pool_of(w.plan.name) == pool]
        taken = {w.plan.name for w in running + self._retiring}
        names = (n for k in itertools.count() if (n := pool if k == 0 else f"{pool}#{k}") not in taken)
        for _ in range(replicas - len(running)):
            self.workers.append(self._spawn(replace(self.plans[pool], name=next(names))))
        for worker in sorted(running, key=lambda w: len(w.tasks))[:max(0, len(running) - replicas)]:
            self.workers.remove(worker)
            self._retiring.append(worker)
            self._reap(worker)

    def _reap(self, worker: _Worker) -> None:
        if worker in self._retiring and not worker.tasks:
            self._retiring.remove(worker)
            self._of_handle.pop(worker.handle, None)
            self.transport.stop([worker.handle])

    # ------------------------------------------------------------------------------------------ running

    def run(self, requests: list[Request], on_tick: Callable[[], None] | None = None) -> list[RequestRecord]:
        """Run requests at their arrival offsets until every one has finished, failed or been rejected."""
        start = time.monotonic()
        arrivals = sorted(requests, key=lambda r: r.arrival)
        pending = iter(arrivals)
        upcoming = next(pending, None)
        while upcoming is not None or self.live:
            now = time.monotonic()
            while upcoming is not None and start + upcoming.arrival <= now:
                self.submit(upcoming, arrived=start + upcoming.arrival)
                upcoming = next(pending, None)
            timeout = None if upcoming is None else max(0.0, start + upcoming.arrival - time.monotonic())
            self._poll(min(timeout, 0.2) if timeout is not None else 0.2)
            if on_tick:
                on_tick()
        return [self.requests[r.id] for r in requests]

    def poll(self, timeout: float) -> None:
        """Handle worker results for up to `timeout` s, or until `wake()`: for a caller that drives the engine
        from its own loop (the HTTP server's engine thread, which `submit`s requests as they come)."""
        self._poll(timeout)

    def wake(self) -> None:
        """Make a `poll` waiting in another thread return now: the one method safe to call from any thread."""
        self.transport.wake()

    def submit(self, request: Request, arrived: float | None = None) -> RequestRecord:
        arrived = arrived or time.monotonic()
        sla_ms = self.options.sla_ms or self.program.sla_ms or float("inf")
        record = RequestRecord(request.id, arrived, arrived + sla_ms / 1000)
        self.requests[request.id] = record
        rejection = self._admission(sla_ms)
        if rejection:
            record.status, record.error, record.end, record.rejection = "rejected", rejection.reason, arrived, rejection
            self.on_finish(record)
            return record
        live = _Live(request, record, _Frame(self.program.body, (), None, None))
        self.live[request.id] = live
        self._advance(live, live.top)
        return record

    def _admission(self, sla_ms: float) -> Rejection | None:
        inflight = len(self.live)
        if inflight >= self.options.max_inflight:
            return Rejection("limit", f"rejected by admission control: {inflight} requests in flight, the limit "
                                      f"(--max-inflight {self.options.max_inflight})")
        # An idle engine always admits: the estimate only moves when requests end, so one once above the SLA
        # (a slow first request, a burst) would otherwise reject every request for ever.
        predicted = self._predicted_e2e(inflight) if self.options.admission == "sla" and inflight else None
        if predicted is not None and predicted * 1000 > ADMIT_SLA_SHARE * sla_ms:
            return Rejection("sla", f"rejected by admission control: predicted end-to-end {predicted * 1000:.0f} ms "
                                    f"exceeds {ADMIT_SLA_SHARE:.0%} of the SLA of {sla_ms:.0f} ms, the most it admits "
                                    f"({inflight} requests in flight)")
        return None

    def cancel(self, request: int, reason: str = "cancelled by the caller") -> None:
        """End a request now (status "cancelled"): its workers drop the calls they hold for it, and what they
        answer for it is ignored. A request already ended is left as it is."""
        live = self.live.get(request)
        if live is None:
            return
        for worker in self.workers + self._retiring:
            tasks = tuple(task for task, held in worker.tasks.items() if held.live is live)
            if tasks:
                self.transport.cancel(worker.handle, tasks)
        live.record.status, live.record.error, live.record.end = "cancelled", reason, time.monotonic()
        self._end(live)

    def _predicted_e2e(self, inflight: int) -> float | None:
        horizon = time.monotonic() - RATE_WINDOW_S
        while self._departures and self._departures[0] < horizon:
            self._departures.popleft()
        return predict_e2e(inflight, self._departures, self._e2e_mean)

    def execute(self, node: Node, inputs: list[tuple]) -> list[tuple]:
        """Run one op on each input tuple, outside any request graph (`hetagent index`, benchmarks); the values
        of each call in order. A failing call raises."""
        worker = next(w for w in self.workers if w.plan.runs(node))
        ids = []
        for values in inputs:
            sent = time.monotonic()
            call = Call(next(self._tasks), -1, node.op, node.label, node.attrs, values, node.kernel, float("inf"), 0,
                        sent=sent)
            self._send(worker, _Task(None, None, node, call, sent))
            ids.append(call.task)
        while not all(i in self._direct for i in ids):
            self._poll(0.5)
        results = [self._direct.pop(i) for i in ids]
        for result in results:
            if isinstance(result, str):
                raise HetagentError(f"'{node.label}' ({node.op}) failed: {result}")
        return results

    # ------------------------------------------------------------------------------------------ the graph

    def _advance(self, live: _Live, frame: _Frame) -> None:
        progressed = True
        while progressed and live.record.status == "running":
            progressed = False
            for node in frame.block.nodes:
                if node.index in frame.started or not all(frame.has(v) for v in node.operands):
                    continue
                frame.started.add(node.index)
                frame.running += 1
                progressed = True
                self._start(live, frame, node, tuple(frame.get(v) for v in node.operands))
        if live.record.status == "running" and frame.running == 0 and all(frame.has(v) for v in frame.block.yields):
            self._close(live, frame, tuple(frame.get(v) for v in frame.block.yields))

    def _start(self, live: _Live, frame: _Frame, node: Node, inputs: tuple) -> None:
        if node.op == "control.loop":
            self._advance(live, _Frame(node.regions[0], inputs, frame, node))
        elif node.op == "control.branch":
            arm = 0 if predicate(node.attrs["predicate"])(inputs, {}) else 1
            self._advance(live, _Frame(node.regions[arm], (), frame, node))
        elif node.op in ENGINE_OPS:
            now = time.monotonic()
            if node.op == "kv.transfer":
                values, size = inputs, inputs[0].header.total_bytes
                source = getattr(inputs[0], "device", "") or "?"  # across nodes (Ray) only the header travels
                target = node.placement.device if node.placement else "?"
                record = OpRecord(live.request.id, node.label, node.op, "engine", now, now, 0.0, 0.0, 1, True, size,
                                  getattr(inputs[0], "store_s", 0.0), f"{source} -> {target}")
            else:
                values = (live.request.payload["audio" if node.op == "input.audio" else "query"],)
                record = OpRecord(live.request.id, node.label, node.op, "engine", now, now, 0.0, 0.0, 1, True)
            self.ops.append(record)
            self._complete(live, frame, node, values)
        else:
            self._dispatch(live, frame, node, inputs, attempt=1)

    def _complete(self, live: _Live, frame: _Frame, node: Node, values: tuple) -> None:
        frame.env.update(zip(node.results, values))
        frame.outputs.setdefault(node.op, []).append(values)
        frame.running -= 1
        self._advance(live, frame)

    def _close(self, live: _Live, frame: _Frame, yielded: tuple) -> None:
        owner, parent = frame.owner, frame.parent
        if owner is None:
            self._finish(live, yielded)
            return
        if owner.op == "control.loop":
            until = owner.attrs.get("until")
            done = frame.trip >= owner.attrs["max_trips"] or (until and predicate(until)(yielded, frame.outputs))
            if not done:
                self._advance(live, _Frame(owner.regions[0], yielded, parent, owner, frame.trip + 1))
                return
        self._complete(live, parent, owner, yielded)

    # ------------------------------------------------------------------------------------------ routing

    def _dispatch(self, live: _Live, frame: _Frame, node: Node, inputs: tuple, attempt: int) -> None:
        candidates = [w for w in self.workers if w.plan.runs(node)]
        home = [w for w in candidates if w.plan.name == live.kv_home and node.op in ("llm.prefill", "llm.decode")]
        # a worker still starting (restarted, or just scaled up) only when no started one serves the op
        worker = home[0] if home else min(candidates, key=lambda w: (not w.ready, len(w.tasks), w.restarts))
        if node.op == "llm.prefill" and self.options.prefix_cache_mb > 0:  # the worker holding its longest prefix
            prompt = prefix_routing.prompt_text(inputs, node.attrs.get("system"))
            ranked = sorted((w for w in candidates if w.ready), key=lambda w: (len(w.tasks), w.restarts)) or [worker]
            if len(ranked) > 1:  # a choice to make: score it (matching prompts costs the router time per call)
                worker = ranked[prefix_routing.choose([len(w.tasks) for w in ranked], [
                    self._prompts.matched(w.plan.name, prompt) for w in ranked], len(prompt))]
            self._prompts.record(worker.plan.name, prompt)
        sent = time.monotonic()
        sampling = live.request.sampling if node.op in ("llm.prefill", "llm.decode") else None
        if sampling is not None and node.index != self._answer_decode:  # an inner call generates its full budget
            sampling = replace(sampling, max_tokens=None, stop=())
        call = Call(next(self._tasks), live.request.id, node.op, node.label, node.attrs, inputs, node.kernel,
                    live.record.deadline, live.request.seed, attempt, sent,
                    stream=live.request.stream and node.index == self._answer_decode, sampling=sampling,
                    extend=node.extend if self.options.prefix_cache_mb > 0 else None)
        self._send(worker, _Task(live, frame, node, call, sent))

    # ------------------------------------------------------------------------------------------ transport

    def _spawn(self, plan: WorkerPlan) -> _Worker:
        worker = _Worker(plan, self._launch(plan))
        self._of_handle[worker.handle] = worker
        return worker

    def _launch(self, plan: WorkerPlan) -> Any:
        o = self.options
        context = WorkerContext(
            worker=plan.name, device=plan.device, cores=plan.cores,
            kernels=self._kernels_of(plan) if self._kernels_of else (), run_id=o.run_id, cache_dir=o.cache_dir,
            model_dir=o.model_dir, corpus=o.corpus, stores=dict(o.stores), http_tools=dict(o.http_tools),
            temperature=o.temperature, device_index=plan.device_index, device_uuid=plan.device_uuid,
            prefix_cache_bytes=int(o.prefix_cache_mb * 2**20),
        )
        return self.transport.spawn(plan, WorkerSpec(context, dict(plan.factories)))

    def _send(self, worker: _Worker, task: _Task) -> None:
        worker.tasks[task.call.task] = task
        if len(worker.tasks) == 1:  # it was idle: silence before now was no sign of trouble
            worker.heard = time.monotonic()
        self.transport.send(worker.handle, task.call)

    def _poll(self, timeout: float) -> None:
        self._watchdog()
        for handle, message in self.transport.poll(timeout):
            worker = self._of_handle.get(handle)
            if worker is None:  # stopped (retired) since
                continue
            if message[0] == "lost":
                self._lost(worker)
            else:
                worker.heard = time.monotonic()
                self._message(worker, message)

    def _watchdog(self) -> None:
        """Kill a worker that holds calls but has been silent past `watchdog_s` (hung, or stopped by SIGSTOP);
        its transport then reports it lost like any crash: replaced, and its calls retried."""
        now = time.monotonic()
        for worker in self.workers + self._retiring:
            if worker.tasks and worker.ready and now - worker.heard > self.options.watchdog_s:
                warnings.warn(f"worker {worker.plan.name} held {len(worker.tasks)} call(s) and said nothing for "
                              f"{now - worker.heard:.0f} s (watchdog {self.options.watchdog_s:g} s): killed, replaced")
                self.transport.kill(worker.handle)
                worker.heard = now

    def _message(self, worker: _Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            return
        if kind == "broken":
            raise HetagentError(f"worker {worker.plan.name} could not start its executors: {message[1]}")
        if kind == "tokens":
            self._tokens(worker, message[1])
            return
        _, task_id, result, token_times, queue_s, run_s, kv_s, finish_reason = message  # result: values, or the error
        task = worker.tasks.pop(task_id, None)
        if task is None:
            return
        self._reap(worker)
        now = time.monotonic()
        live, node = task.live, task.node
        ok = kind == "done"
        if live is None:
            self._direct[task_id] = result
            self.ops.append(OpRecord(-1, node.label, node.op, worker.plan.name, task.sent, now, queue_s, run_s, 1, ok))
            return
        prefilled = ok and node.op == "llm.prefill"
        kv_bytes = result[0].header.total_bytes if prefilled else 0
        self.ops.append(OpRecord(live.request.id, node.label, node.op, worker.plan.name, task.sent, now, queue_s, run_s,
                                 task.call.attempt, ok, kv_bytes, kv_s,
                                 prompt_tokens=result[1]["position"] if prefilled else 0,
                                 cached_tokens=result[1].get("cached", 0) if prefilled else 0))
        if ok and isinstance(result[0], kv_format.KVHandle):  # across nodes the object store holds it instead
            live.segments.add(result[0].segment)
        if live.record.status != "running":
            self._release(live)
            return
        if not ok:
            self._fail(live, f"'{node.label}' ({node.op}) failed on {worker.plan.name}: {result}")
            return
        self._account(live, worker, node, result, memoryview(token_times).cast("d"), finish_reason)
        self._complete(live, task.frame, node, result)

    def _tokens(self, worker: _Worker, report: tuple) -> None:
        """A worker's per-step tokens of streamed calls: hand on those at positions not handed on before."""
        for task_id, tokens in report:
            task = worker.tasks.get(task_id)
            if task is None or task.live is None or task.live.record.status != "running":
                continue
            live, start = task.live, task.reported
            task.reported += len(tokens)
            fresh = tokens[max(0, live.streamed - start):]  # a retry reports again from its first token
            if fresh:
                live.streamed += len(fresh)
                self.on_tokens(live.request.id, fresh)

    def _account(self, live: _Live, worker: _Worker, node: Node, values: tuple, token_times: memoryview,
                 finish_reason: str | None) -> None:
        if node.op in ("llm.prefill", "llm.decode"):
            live.kv_home = worker.plan.name
        if node.op == "llm.prefill":
            live.record.prompt_tokens += values[1]["position"]
            live.record.cached_tokens += values[1].get("cached", 0)
        if node.op == "llm.prefill" and token_times:
            live.record.first_token = token_times[0]
        if node.op == "llm.decode":
            live.record.completion_tokens += 1 + len(token_times)
            live.record.gaps += [b - a for a, b in zip(token_times, token_times[1:])]
            live.record.tokens.setdefault(node.label, []).append(values[0])
            if node.index == self._answer_decode:
                live.record.finish_reason = finish_reason or "stop"

    def _lost(self, worker: _Worker) -> None:
        """A worker died: restart it and send its in-flight calls again (or fail them past max_attempts)."""
        if not worker.ready:  # it died starting (an import, a backend, a device): a restart would die the same way
            raise HetagentError(f"worker {worker.plan.name} ({worker.plan.device}) exited while starting, before it "
                                "was ready: its error, if it printed one, is above on stderr")
        orphans = list(worker.tasks.values())
        worker.tasks.clear()
        del self._of_handle[worker.handle]
        if worker in self.workers:
            worker.handle = self._launch(worker.plan)
            self._of_handle[worker.handle] = worker
            worker.ready, worker.restarts = False, worker.restarts + 1
        else:  # it was retiring: it stays down
            self._retiring.remove(worker)
        for task in orphans:
            kv_format.unlink_task(self.options.run_id, task.call.task)  # a cache it may have begun
            live = task.live
            if live is None:
                self._direct[task.call.task] = f"worker {worker.plan.name} died while running it"
                continue
            if live.record.status != "running":
                continue
            if task.call.attempt >= self.options.max_attempts:
                self._fail(live, f"'{task.node.label}' ({task.node.op}) was lost {task.call.attempt} times: worker "
                                 f"{worker.plan.name} died while running it")
            else:
                self._dispatch(live, task.frame, task.node, task.call.inputs, task.call.attempt + 1)

    # ------------------------------------------------------------------------------------------ endings

    def _finish(self, live: _Live, outputs: tuple) -> None:
        record = live.record
        record.status, record.end, record.outputs = "ok", time.monotonic(), outputs
        e2e = record.end - record.arrival
        self._e2e_mean = e2e if self._e2e_mean is None else 0.8 * self._e2e_mean + 0.2 * e2e
        self._end(live)

    def _fail(self, live: _Live, message: str) -> None:
        live.record.status, live.record.error, live.record.end = "error", message, time.monotonic()
        self._end(live)

    def _end(self, live: _Live) -> None:
        if live.record.status != "cancelled":  # its time in the engine says nothing of the rate requests are served
            self._departures.append(live.record.end)
        self.live.pop(live.request.id, None)
        self._release(live)
        self.on_finish(live.record)

    def _release(self, live: _Live) -> None:
        for segment in live.segments:
            kv_format.unlink(segment)
        live.segments.clear()


class LocalEngine(Engine):
    """The router over this node's worker processes (`ProcessTransport`): the embedded default."""

    def __init__(self, program: Program, workers: list[WorkerPlan], options: EngineOptions,
                 kernels_of: Callable[[WorkerPlan], tuple] | None = None):
        super().__init__(program, workers, options, kernels_of, transport=ProcessTransport())


def predict_e2e(inflight: int, departures, mean_e2e: float | None) -> float | None:
    """A new request's end-to-end time, arriving behind `inflight` others: (inflight + 1) / μ, its expected time
    in a single server of capacity μ (M/M/1) that it finds holding `inflight` requests. μ is what the
    requests that ended (`departures`, their end times, oldest first) show: their rate λ plus 1 / their mean
    end-to-end time T, since T = 1 / (μ - λ). Saturated, T is long and μ is the departure rate itself; below
    capacity, requests depart at the rate they arrive, and the rate alone would take that for the capacity and
    predict (inflight + 1) arrival gaps for a request that takes about T. Until three requests have ended: T."""
    span = departures[-1] - departures[0] if len(departures) >= 3 else 0.0
    if span <= 0:
        return mean_e2e
    capacity = (len(departures) - 1) / span + (1 / mean_e2e if mean_e2e else 0.0)
    return (inflight + 1) / capacity


def _pool_of(worker: str) -> str:
    return worker.partition("#")[0]


def _check_names(program: Program) -> None:
    """Unknown predicates and transforms are bad input: say so before any worker starts."""
    for node in program.nodes():
        for key in ("until", "predicate"):
            if node.op.startswith("control.") and key in node.attrs:
                predicate(node.attrs[key])
        if node.op == "data.transform":
            transform(node.attrs["fn"])
