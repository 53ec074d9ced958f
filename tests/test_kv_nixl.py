"""KV caches between processes through NIXL (UCX), DRAM to DRAM on this machine: the cache a prefill-side
process wrote in the `spec/kv-format.md` layout reaches another process through a NIXL READ and reads back
exactly."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from hetagent.backend import kv_format, nixl

pytestmark = pytest.mark.skipif(not nixl.available(), reason="NIXL is not installed (extra hetagent[nixl])")

SHAPE = (2, 2, 1, 2, 16, 8)  # layers, K/V, batch, kv heads, capacity, head dim


def _writer(conn, segment: str) -> None:
    kv = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    handle = kv_format.write(kv, 11, model="tiny-llama", dtype="fp32", segment=segment, device="host-cpu")
    endpoint = nixl.NixlEndpoint()
    conn.send(endpoint.publish(kv_format.read_buffer(handle)))
    kv_format.unlink(segment)
    conn.recv()  # keep the published buffer alive until the reader is done


def test_a_kv_cache_crosses_processes_through_nixl():
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    writer = context.Process(target=_writer, args=(theirs, f"hxnixl{np.random.randint(1 << 30)}-kv-1"))
    writer.start()
    try:
        assert mine.poll(60), "the writer published nothing"
        descriptor = mine.recv()
        buffer, seconds = nixl.NixlEndpoint().fetch(descriptor)
        handle = kv_format.write_buffer(buffer, f"hxnixl{np.random.randint(1 << 30)}-kv-2")
        try:
            got = np.zeros(SHAPE, dtype=np.float32)
            header = kv_format.read_into(handle, got)
        finally:
            kv_format.unlink(handle.segment)
        expected = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
        assert (header.tokens, header.layers, header.model) == (11, 2, "tiny-llama") and seconds > 0
        np.testing.assert_array_equal(got[..., :11, :], expected[..., :11, :])
        assert not got[..., 11:, :].any()  # only the filled positions travel
    finally:
        mine.send("done")
        writer.join(30)
