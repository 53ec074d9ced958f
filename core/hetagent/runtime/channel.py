"""A worker's channel: messages between the router and a worker, as framed pickles over two one-way pipes.

Every result crosses one on the critical path, with cold caches: the worker's kernels have just streamed
their weights through them. Timed on a 2-core VM after a decode step, each Python step of the path then costs
10-20x its warm time (unpickling a decode result: 3.5 µs warm, 50-75 µs there). So the path is kept short: one
C-level `pickle.dumps` and one `writev` (length and pickle) to send, one `read` for every complete message
waiting, one `pickle.loads` each, straight from the bytes read when they are one whole message (the common
case). multiprocessing's `Connection` instead builds a pickler object per message and reads each message in two
reads, and its duplex `Pipe` is a Unix socket.

A frame is a 4-byte big-endian length, then the pickle. Reads are buffered: `recv` returns the next message,
reading once when no complete one is buffered (so it blocks only while a message is partly written);
`pending` says whether one is buffered, which a selector on the pipe cannot see. Sends block until the pipe has
taken the message, except on an end made `never_block()` (the router's: it serves every worker, and a router
blocked on one worker's full pipe while that worker blocks on the router's would wait for ever): there what the
pipe cannot take now stays in the channel, `send` says so, and `flush` writes more once the pipe is writable.
A channel pickles for `multiprocessing`'s spawn (its descriptors passed to the child), like a `Connection`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import struct

from multiprocessing import reduction

_LENGTH = struct.Struct("!I")
_READ = 1 << 16  # bytes per read: most messages are far smaller; a larger one takes several
# Each pipe holds this much unread (the most Linux allows an unprivileged process by default; a pipe's own
# default is 64 KiB): fewer results wait in the channel for the router to drain the pipe.
_PIPE_BYTES = 1 << 20


class Channel:
    """One end: reads messages from `inbox` (a pipe's read descriptor), writes them to `outbox` (another's write
    descriptor). `fileno()` is the inbox, for selectors."""

    __slots__ = ("_inbox", "_outbox", "_buffer", "_unsent")

    def __init__(self, inbox: int, outbox: int):
        self._inbox, self._outbox = inbox, outbox
        self._buffer = bytearray()  # read, not yet returned
        self._unsent = bytearray()  # sent, not yet taken by the pipe (a `never_block` end)

    def fileno(self) -> int:
        return self._inbox

    @property
    def outbox(self) -> int:
        """The descriptor sends go to: a selector's to watch for room when `send` could not write everything."""
        return self._outbox

    def never_block(self) -> None:
        """Make `send` return at once whatever the pipe can take; the rest waits for `flush`."""
        os.set_blocking(self._outbox, False)

    def send(self, message) -> bool:
        """Send a message; whether the pipe took all of it (always, unless `never_block`)."""
        payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        header = _LENGTH.pack(len(payload))
        if self._unsent:  # earlier messages wait: this one goes after them
            self._unsent += header
            self._unsent += payload
        else:  # the common case: one write of both pieces, nothing copied
            try:
                written = os.writev(self._outbox, (header, payload))
            except BlockingIOError:
                written = 0
            if written == 4 + len(payload):
                return True
            self._unsent += (header + payload)[written:]
        return self.flush()

    def flush(self) -> bool:
        """Write what waits to be sent, as much as the pipe takes now on a `never_block` end; whether all went."""
        unsent = self._unsent
        while unsent:  # a write may be partial once a message outgrows what the pipe holds
            try:
                written = os.write(self._outbox, unsent)
            except BlockingIOError:
                return False
            del unsent[:written]
        return True

    def pending(self) -> bool:
        """Whether a complete message is buffered (read already, not yet returned)."""
        buffer = self._buffer
        return len(buffer) >= 4 and len(buffer) >= 4 + _LENGTH.unpack_from(buffer)[0]

    def recv(self):
        """The next message; raises EOFError once the other end is closed and nothing is left."""
        buffer = self._buffer
        while not self.pending():
            data = os.read(self._inbox, _READ)
            if not data:
                raise EOFError("the channel's other end closed")
            if not buffer and len(data) >= 4 and len(data) == 4 + _LENGTH.unpack_from(data)[0]:
                return pickle.loads(memoryview(data)[4:])  # the common case: the read is exactly one message
            buffer += data
        size = _LENGTH.unpack_from(buffer)[0]
        message = pickle.loads(memoryview(buffer)[4:4 + size])
        del buffer[:4 + size]
        return message

    def close(self) -> None:
        for fd in (self._inbox, self._outbox):
            with contextlib.suppress(OSError):  # closed already
                os.close(fd)

    def __reduce__(self):
        # passed to a spawned process: its descriptors are duplicated into the child, as a Connection's are
        return _rebuild, (reduction.DupFd(self._inbox), reduction.DupFd(self._outbox))


def _rebuild(inbox, outbox) -> Channel:
    return Channel(inbox.detach(), outbox.detach())


def channel_pair() -> tuple[Channel, Channel]:
    """Two connected ends: what one sends, the other receives."""
    a_in, b_out = os.pipe()
    b_in, a_out = os.pipe()
    for fd in (b_out, a_out):
        with contextlib.suppress(OSError):  # a lower system limit: the pipe keeps its default size
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return Channel(a_in, a_out), Channel(b_in, b_out)
