"""An agent's engine as a long-lived service fed by concurrent HTTP requests.

The engine is not thread-safe and need not be: once started, one background thread owns it and runs its loop —
take the requests waiting in the inbox, `submit` each, `poll` the workers. (It is built before, on the main
thread: Ray, for one, installs signal handlers as it starts.) HTTP handlers (on the asyncio loop)
only append to the inbox (a deque: thread-safe) and `wake()` the engine, then await two futures the engine
thread resolves through `call_soon_threadsafe`: admission (accepted, or rejected with the reason) and the end
of the request. Admission is decided before any byte of the response is sent, so a rejected request gets a real
HTTP status (429/503), even when it asked for a stream. A streamed request also gets the answer's token ids as
the engine reports them (`engine.on_tokens`), on `Ticket.tokens`, which ends with None after the request's end.
A client that goes away before its request ends has it cancelled (`cancel`): the engine drops its calls.

The service uses the engine's public face only (`ENGINE_API`; `spec/runtime.md`, "Snapshot"): it submits, polls,
wakes, cancels and closes, takes the op records, forgets ended requests, and reads the engine's state from
`snapshot()`. The engine's typed admission `Rejection` becomes an HTTP status here, in `refusal`, and nowhere else.
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
from hetagent.runtime.engine import Rejection, Request, RequestRecord
from hetagent.serve.metrics import ServeMetrics

IDLE_POLL_S = 0.5  # the loop's longest sleep: `wake()` ends it early, this only bounds an engine that cannot wake
# what the service touches of an engine (tests/test_serve.py checks it): methods, callbacks it sets, nothing else
ENGINE_API = frozenset({"submit", "poll", "wake", "cancel", "close", "snapshot", "take_ops", "forget", "on_finish",
                        "on_tokens"})
# admission's rejections as HTTP statuses: 429 the in-flight limit (come back later), 503 a deadline the engine
# predicts it would miss
HTTP_STATUS = {"limit": 429, "sla": 503}


@dataclass(frozen=True)
class Refusal:
    status: int  # HTTP
    reason: str


def refusal(rejection: Rejection) -> Refusal:
    return Refusal(HTTP_STATUS[rejection.kind], rejection.reason)


@dataclass
class Ticket:
    """One HTTP request's stake in the engine: resolved on the asyncio loop that made it."""

    request: Request
    loop: asyncio.AbstractEventLoop
    admitted: asyncio.Future = field(init=False)  # -> None, or a Refusal
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
        """`engine`: a started engine (`hetagent.runtime.engine.Engine`), which this service owns and closes."""
        self.engine, self.metrics = engine, metrics
        engine.on_finish = self._finished
        engine.on_tokens = self._tokens
        self._inbox: collections.deque[Ticket] = collections.deque()
        self._cancels: collections.deque[int] = collections.deque()  # requests whose clients went away
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
                ticket.admitted.set_result(Refusal(503, f"the engine has stopped: {self.failure or 'shutting down'}"))
                return ticket
            self._inbox.append(ticket)
        self.engine.wake()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: end its request (called on the asyncio loop; nothing happens if it has ended)."""
        self._cancels.append(ticket.request.id)
        self.engine.wake()

    # ------------------------------------------------------------------------------------------ engine thread

    def _main(self) -> None:
        engine = self.engine
        try:
            while not self._stopping:
                while self._inbox:
                    self._admit(self._inbox.popleft())
                while self._cancels:
                    engine.cancel(self._cancels.popleft(), "cancelled: the client went away")
                engine.poll(IDLE_POLL_S)
                self.metrics.ops(engine.take_ops())  # a server runs for ever: keep no history in the engine
                snapshot = engine.snapshot()
                self.metrics.queues(snapshot.inflight, len(self._inbox), dict(snapshot.calls))
        except Exception as exc:  # an engine fault: fail what is in flight, report unhealthy
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._closed = True
                waiting = list(self._inbox)
                self._inbox.clear()
            for ticket in waiting:
                ticket.resolve(ticket.admitted, Refusal(503, "the server is shutting down"))
            engine.close()  # ends every live request with an error (on_finish resolves its ticket)

    def _admit(self, ticket: Ticket) -> None:
        self._tickets[ticket.request.id] = ticket
        record = self.engine.submit(ticket.request, arrived=time.monotonic())
        ticket.resolve(ticket.admitted, refusal(record.rejection) if record.rejection else None)

    def _finished(self, record: RequestRecord) -> None:
        self.engine.forget(record.id)
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
