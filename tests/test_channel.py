"""The worker channel (`runtime/channel.py`): framing, buffering, large messages, end of stream, spawn."""

import multiprocessing
import os
import pickle
import selectors
import struct
import threading
import time

import numpy as np
import pytest

from hetagent.runtime.channel import channel_pair


def test_messages_arrive_whole_and_in_order_however_they_are_read():
    a, b = channel_pair()
    sent = [("done", i, ("x" * i,), (0.5,) * (i % 3)) for i in range(50)]
    for message in sent:
        a.send(message)
    got = [b.recv()]  # one read takes every message waiting; the rest are buffered, which a selector cannot see
    assert b.pending()
    while b.pending():
        got.append(b.recv())
    assert got == sent
    assert not b.pending()


def test_a_message_larger_than_the_pipe_buffer_crosses_whole():
    a, b = channel_pair()
    big = np.arange(1 << 20, dtype=np.float32)  # 4 MiB: many reads on the far side, many writes on this one
    writer = threading.Thread(target=a.send, args=(("done", 1, (big,)),))
    writer.start()  # the write blocks until the reader drains the pipe
    message = b.recv()
    writer.join()
    assert message[:2] == ("done", 1) and np.array_equal(message[2][0], big)


def test_a_partly_written_message_is_not_pending_and_is_completed_by_a_later_read():
    a, b = channel_pair()
    a.send(("first",))
    payload_end = a._outbox  # its write descriptor: to write a frame in two parts
    frame = pickle.dumps(("second", "y" * 100))
    os.write(payload_end, struct.pack("!I", len(frame)) + frame[:10])  # as a writer mid-way would leave it
    assert b.recv() == ("first",)
    assert not b.pending()
    os.write(payload_end, frame[10:])
    assert b.recv() == ("second", "y" * 100)


def test_the_far_end_closing_ends_the_stream_after_what_it_sent():
    a, b = channel_pair()
    a.send(("last words",))
    a.close()
    assert b.recv() == ("last words",)
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(OSError):  # writing to a closed reader: BrokenPipeError, not a signal
        b.send(("anyone?",))


def _echo(end):
    while True:
        message = end.recv()
        if message == "stop":
            return
        end.send(("echo", message))


def test_an_end_passes_to_a_spawned_process_and_its_death_reads_as_end_of_stream():
    mine, theirs = channel_pair()
    process = multiprocessing.get_context("spawn").Process(target=_echo, args=(theirs,), daemon=True)
    process.start()
    theirs.close()  # the child holds its own copies now; ours would keep the stream open
    selector = selectors.DefaultSelector()
    selector.register(mine, selectors.EVENT_READ)
    mine.send(("call", 7))
    assert selector.select(30)
    assert mine.recv() == ("echo", ("call", 7))
    mine.send("stop")
    process.join(30)
    with pytest.raises(EOFError):
        mine.recv()


def test_a_never_blocking_end_keeps_what_the_pipe_cannot_take_until_flushed_in_order():
    a, b = channel_pair()
    a.never_block()
    big = "x" * (3 << 20)  # more than the pipe holds
    assert a.send(("big", big)) is False  # nobody reads yet: it returns at once, the rest kept
    assert a.send(("after",)) is False  # behind it
    got = []
    reader = threading.Thread(target=lambda: got.extend([b.recv(), b.recv()]))
    reader.start()
    while not a.flush():  # as the transport does when the selector finds room
        time.sleep(0.001)
    reader.join(30)
    assert got == [("big", big), ("after",)]
