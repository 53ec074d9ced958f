"""A worker's channel: messages between the router and a worker, as framed pickles over two one-way pipes.

Every result crosses one on the critical path, with cold caches: the worker's kernels have just streamed
their weights through them. Timed on a 2-core VM after a decode step, each Python step of the path then costs
10-20x its warm time (unpickling a decode result: 3.5 µs warm, 50-75 µs there). So the path is kept short: one
C-level `pickle.dumps` and one `write` to send, one `read` for every complete message waiting, one
`pickle.loads` each. multiprocessing's `Connection` instead builds a pickler object per message and reads each
message in two reads, and its duplex `Pipe` is a Unix socket.

A frame is a 4-byte big-endian length, then the pickle. Reads are buffered: `recv` returns the next message,
reading once when no complete one is buffered (so it blocks only while a message is partly written);
`pending` says whether one is buffered, which a selector on the pipe cannot see. A channel pickles for
`multiprocessing`'s spawn (its descriptors passed to the child), like a `Connection`.
"""

from __future__ import annotations

import os
import pickle
import struct

from multiprocessing import reduction

_LENGTH = struct.Struct("!I")
_READ = 1 << 16  # bytes per read: most messages are far smaller; a larger one takes several


class Channel:
    """One end: reads messages from `inbox` (a pipe's read descriptor), writes them to `outbox` (another's write
    descriptor). `fileno()` is the inbox, for selectors."""

    __slots__ = ("_inbox", "_outbox", "_buffer")

    def __init__(self, inbox: int, outbox: int):
        self._inbox, self._outbox = inbox, outbox
        self._buffer = bytearray()

    def fileno(self) -> int:
        return self._inbox

    def send(self, message) -> None:
        payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        view = memoryview(_LENGTH.pack(len(payload)) + payload)
        while view:  # a write to a pipe may be partial once the message outgrows the pipe's buffer
            view = view[os.write(self._outbox, view):]

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
            buffer += data
        size = _LENGTH.unpack_from(buffer)[0]
        message = pickle.loads(memoryview(buffer)[4:4 + size])
        del buffer[:4 + size]
        return message

    def close(self) -> None:
        for fd in (self._inbox, self._outbox):
            try:
                os.close(fd)
            except OSError:
                pass

    def __reduce__(self):
        # passed to a spawned process: its descriptors are duplicated into the child, as a Connection's are
        return _rebuild, (reduction.DupFd(self._inbox), reduction.DupFd(self._outbox))


def _rebuild(inbox, outbox) -> Channel:
    return Channel(inbox.detach(), outbox.detach())


def channel_pair() -> tuple[Channel, Channel]:
    """Two connected ends: what one sends, the other receives."""
    a_in, b_out = os.pipe()
    b_in, a_out = os.pipe()
    return Channel(a_in, a_out), Channel(b_in, b_out)
