"""Tool calls in child processes, so that a time limit is a hard deadline (`spec/runtime.md` §5).

A thread cannot be stopped: a tool that holds the GIL (a huge big-integer power) or a server that answers one
byte at a time outlives any limit set on a thread. So every tool call (Python and HTTP) runs in a child
process (`python -m hetagent.backend.tool_sandbox`; workers are daemonic and may not use multiprocessing
children); a call not answered by its deadline has its child killed, and the next call gets a fresh one.
Children are kept and reused while they behave, and die with their parent (PR_SET_PDEATHSIG). Requests and
answers cross the pipes as JSON lines — tool values are JSON by contract — so nothing is unpickled.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

from hetagent.backend.tools import DEFAULT_TIMEOUT_S, ToolContext, ToolTimeout, python_tools, run_tool_here, tool_url
from hetagent.errors import HetagentError

KEEP_IDLE = 4  # children kept for reuse; more run at once when calls overlap, and end afterwards
MAX_ANSWER_BYTES = 64 * 2**20


STARTUP_S = 60.0  # a child has this long to start; a call's own limit counts from when its child is ready


class _Child:
    """A tool process. Its first line says it is ready (imports done); then one answer line per request."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "hetagent.backend.tool_sandbox"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, preexec_fn=_die_with_parent, close_fds=True)
        self.buffer = b""
        self.started = time.monotonic()
        self.ready_at: float | None = None

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def pump(self, timeout: float) -> None:
        """Read what the child wrote (waiting up to `timeout` for something); EOFError if it ended."""
        if select.select([self.process.stdout], [], [], max(timeout, 0))[0]:
            chunk = os.read(self.fileno(), 1 << 20)
            if not chunk:
                raise EOFError
            self.buffer += chunk
            if len(self.buffer) > MAX_ANSWER_BYTES:
                raise HetagentError(f"the tool answered with more than {MAX_ANSWER_BYTES:,} bytes")
        if self.ready_at is None and self.buffer.startswith(b"ready\n"):
            self.buffer, self.ready_at = self.buffer[6:], time.monotonic()

    def answer(self) -> bytes | None:
        if self.ready_at is None or b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a worker killed takes its tools along
    except (OSError, AttributeError):
        pass


class Pending:
    """One call in flight: `ready()` without blocking, `result()` waits (at most until its deadline)."""

    def __init__(self, processes: "ToolProcesses", child: _Child, what: str, limit_s: float):
        self._processes, self._child, self.what, self.limit_s = processes, child, what, limit_s
        self.submitted = time.monotonic()
        self.connection = child  # has fileno(): what `multiprocessing.connection.wait` can wait on

    def deadline(self) -> float:
        child = self._child
        if child.ready_at is None:
            return child.started + STARTUP_S
        return max(self.submitted, child.ready_at) + self.limit_s

    def ready(self) -> bool:
        try:
            self._child.pump(0)
        except (EOFError, OSError, HetagentError):
            return True
        child = self._child
        return (child.ready_at is not None and b"\n" in child.buffer) or time.monotonic() >= self.deadline()

    def result(self):
        child = self._child
        try:
            line = child.answer()
            while line is None and time.monotonic() < self.deadline():
                child.pump(min(self.deadline() - time.monotonic(), 0.1))
                line = child.answer()
        except (EOFError, OSError, HetagentError) as exc:
            self._processes.discard(child)
            if isinstance(exc, HetagentError):
                raise HetagentError(f"{self.what} failed: {exc}") from None
            raise HetagentError(f"{self.what} failed: the process running it ended "
                                f"(exit status {child.process.poll()})") from None
        if line is None:
            self._processes.discard(child)
            if child.ready_at is None:
                raise HetagentError(f"{self.what}: its tool process did not start within {STARTUP_S:g} s")
            raise ToolTimeout(f"{self.what} did not answer within {self.limit_s * 1000:.0f} ms (stopped)")
        self._processes.release(child)
        answer = json.loads(line)
        if "error" in answer:
            raise HetagentError(answer["error"])
        return answer["ok"]


class ToolProcesses:
    def __init__(self, prestart: int = 2):
        self._idle: list[_Child] = [_Child() for _ in range(prestart)]
        self._lock = threading.Lock()

    def wait_ready(self) -> None:
        """Wait (up to `STARTUP_S`) until the prestarted children have started: a worker that says it is ready
        while they still import would have them compete for its cores with its first calls (a run's first
        prefills came back 2-4 ms late to a router that could not get a core)."""
        with self._lock:
            starting = [child for child in self._idle if child.ready_at is None]
        for child in starting:
            try:
                while child.ready_at is None and time.monotonic() < child.started + STARTUP_S:
                    child.pump(0.1)
            except (EOFError, OSError, HetagentError):
                pass  # it died starting: the call that takes it gets a fresh one

    def submit(self, request: dict, *, limit_s: float, what: str) -> Pending:
        with self._lock:
            child = self._idle.pop() if self._idle else None
        if child is None or child.process.poll() is not None:
            child = _Child()
        try:
            child.process.stdin.write(json.dumps(request).encode() + b"\n")
            child.process.stdin.flush()
        except OSError:  # it died while idle: a fresh one
            child = _Child()
            child.process.stdin.write(json.dumps(request).encode() + b"\n")
            child.process.stdin.flush()
        return Pending(self, child, what, limit_s)

    def release(self, child: _Child) -> None:
        with self._lock:
            if len(self._idle) < KEEP_IDLE:
                self._idle.append(child)
                return
        child.kill()

    def discard(self, child: _Child) -> None:
        child.kill()
        with self._lock:  # a fresh child, starting now, for the next call
            if len(self._idle) < KEEP_IDLE:
                self._idle.append(_Child())


_shared: ToolProcesses | None = None
_shared_lock = threading.Lock()


def processes() -> ToolProcesses:
    """This process's tool children (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ToolProcesses()
        return _shared


def call_tool(name: str, arguments: dict, *, context: ToolContext, http_tools: dict[str, str],
              timeout_s: float | None) -> object:
    return start_tool(name, arguments, context=context, http_tools=http_tools, timeout_s=timeout_s).result()


def start_tool(name: str, arguments: dict, *, context: ToolContext, http_tools: dict[str, str],
               timeout_s: float | None):
    """Start one call in a tool process; returns its `tool_sandbox.Pending` (`ready()`, `result()`)."""
    limit = timeout_s or DEFAULT_TIMEOUT_S
    url = tool_url(name, http_tools)
    what = f"HTTP tool {name!r} ({url})" if url else f"tool {name!r}"
    request = {"name": name, "arguments": arguments, "url": url, "limit_s": limit,
               "corpus": str(context.corpus) if context.corpus else None}
    return processes().submit(request, limit_s=limit, what=what)


def main() -> None:  # pragma: no cover - the child
    for entry in python_tools().values():  # warm: the shipped tools are imported before the first call comes
        if entry.value.startswith("hetagent."):
            entry.load()
    sys.stdout.buffer.write(b"ready\n")
    sys.stdout.buffer.flush()

    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            value = run_tool_here(**request)
            try:
                data = json.dumps({"ok": value}, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise HetagentError(f"tool {request.get('name')!r} returned a value that is not JSON ({exc})") from None
        except BaseException as exc:  # noqa: BLE001 - a tool's failure is its call's, reported as text
            if isinstance(exc, KeyboardInterrupt):
                return
            message = str(exc) if isinstance(exc, HetagentError) else f"{type(exc).__name__}: {exc}"
            data = json.dumps({"error": message[:2000]})
        sys.stdout.buffer.write(data.encode() + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the parent is gone (it ended, or was killed): nobody to answer, nothing to report
        os._exit(0)
