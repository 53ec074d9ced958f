"""An agent's engine as a long-lived service fed by concurrent HTTP requests.

The engine is not thread-safe and need not be: once started, one background thread owns it and runs its loop —
take the requests waiting in the inbox, `submit` each, `poll` the workers. (It is built before, on the main
thread: Ray, for one, installs signal handlers as it starts.) HTTP handlers (on the asyncio loop)
only append to the inbox (a deque: thread-safe) and `wake()` the engine, then await two futures the engine
thread resolves through `call_soon_threadsafe`: admission (accepted, or rejected with the reason) and the end
of the request. Admission is decided before any byte of the response is sent, so a rejected request gets a real
HTTP status (429/503), even when it asked for a stream. A streamed request also gets the answer's token ids as
the engine reports them (`engine.on_tokens`), on `Ticket.tokens`, which ends with None after the request's end.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
import time
from dataclasses import dataclass, field

from hetagent.backend.text import Sampling
from hetagent.runtime.engine import Request, RequestRecord
from hetagent.serve.metrics import ServeMetrics

IDLE_POLL_S = 0.5  # the loop's longest sleep: `wake()` ends it early, this only bounds an engine that cannot wake


@dataclass(frozen=True)
class Rejection:
    status: int  # 429: the in-flight limit, come back later; 503: a deadline the engine predicts it would miss
    reason: str


@dataclass
class Ticket:
    """One HTTP request's stake in the engine: resolved on the asyncio loop that made it."""

    request: Request
    loop: asyncio.AbstractEventLoop
    admitted: asyncio.Future = field(init=False)  # -> None, or a Rejection
    finished: asyncio.Future = field(init=False)  # -> the RequestRecord: ok or error
    # a streamed request's answer tokens (tuples of ids) as the engine reports them; None after the request's end
    tokens: asyncio.Queue = field(init=False, default_factory=asyncio.Queue)
    _pending: list = field(init=False, default_factory=list)  # reported, not yet moved to `tokens` by the loop
    _pending_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self):
        self.admitted, self.finished = self.loop.create_future(), self.loop.create_future()

    def put(self, tokens: tuple | None) -> None:
        """From the engine thread. Waking the loop costs a system call and a thread switch per call, so the
        reports that arrive before the loop has moved the last ones share one wake-up."""
        with self._pending_lock:
            self._pending.append(tokens)
            if len(self._pending) > 1:
                return  # a move is scheduled and will take this one too
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(self._move)

    def _move(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for tokens in pending:
            self.tokens.put_nowait(tokens)

    def resolve(self, future: asyncio.Future, value) -> None:
        def settle():
            if not future.done():  # the client may have gone (its handler cancelled the future)
                future.set_result(value)

        with contextlib.suppress(RuntimeError):  # the loop has closed: the server stopped, nobody is waiting
            self.loop.call_soon_threadsafe(settle)


class AgentService:
    def __init__(self, engine, metrics: ServeMetrics):
        """`engine`: a started LocalEngine (or RayEngine), which this service owns and closes from now on."""
        self.engine, self.metrics = engine, metrics
        engine.on_finish = self._finished
        engine.on_tokens = self._tokens
        self._inbox: collections.deque[Ticket] = collections.deque()
        self._tickets: dict[int, Ticket] = {}  # admitted requests, by id (touched by the engine thread only)
        self._ids = itertools.count()
        self._stopping = False  # asked to stop (`close`)
        self._closed = False  # the inbox takes no more requests: set, under the lock, as the engine thread ends
        self._lock = threading.Lock()
        self.failure: str | None = None  # why the engine thread stopped, when it did on its own
        self._thread = threading.Thread(target=self._main, name="hetagent-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ any thread

    def close(self) -> None:
        self._stopping = True
        self.engine.wake()
        self._thread.join()

    @property
    def healthy(self) -> bool:
        return not self._closed

    def submit(self, payload: dict, seed: int | None, stream: bool = False, sampling: Sampling | None = None) -> Ticket:
        """Queue a request for the engine (called on the asyncio loop); `stream`: report its answer's tokens."""
        rid = next(self._ids)
        ticket = Ticket(Request(rid, payload, 0.0, rid if seed is None else seed, stream=stream, sampling=sampling),
                        asyncio.get_running_loop())
        with self._lock:  # against the engine thread closing the inbox between the test and the append
            if self._closed:
                ticket.admitted.set_result(Rejection(503, f"the engine has stopped: {self.failure or 'shutting down'}"))
                return ticket
            self._inbox.append(ticket)
        self.engine.wake()
        return ticket

    # ------------------------------------------------------------------------------------------ engine thread

    def _main(self) -> None:
        engine = self.engine
        try:
            while not self._stopping:
                while self._inbox:
                    self._admit(self._inbox.popleft())
                engine.poll(IDLE_POLL_S)
                ops, engine.ops = engine.ops, []  # a server runs for ever: keep no history in the engine
                self.metrics.ops(ops)
                self.metrics.queues(len(engine.live), len(self._inbox),
                                    {w.plan.name: len(w.tasks) for w in engine.workers})
        except Exception as exc:  # an engine fault: fail what is in flight, report unhealthy
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._closed = True
                waiting = list(self._inbox)
                self._inbox.clear()
            for ticket in waiting:
                ticket.resolve(ticket.admitted, Rejection(503, "the server is shutting down"))
            engine.close()  # ends every live request with an error (on_finish resolves its ticket)

    def _admit(self, ticket: Ticket) -> None:
        self._tickets[ticket.request.id] = ticket
        limited = len(self.engine.live) >= self.engine.options.max_inflight
        record = self.engine.submit(ticket.request, arrived=time.monotonic())
        rejection = Rejection(429 if limited else 503, record.error) if record.status == "rejected" else None
        ticket.resolve(ticket.admitted, rejection)

    def _finished(self, record: RequestRecord) -> None:
        self.engine.requests.pop(record.id, None)
        self.metrics.request(record)
        ticket = self._tickets.pop(record.id, None)
        if ticket is not None:
            ticket.resolve(ticket.finished, record)
            if ticket.request.stream:
                ticket.put(None)  # after its tokens: the stream then reads `finished`

    def _tokens(self, request: int, tokens: tuple) -> None:
        ticket = self._tickets.get(request)
        if ticket is not None:
            ticket.put(tokens)
