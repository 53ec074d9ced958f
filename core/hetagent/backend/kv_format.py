"""The KV-cache exchange format (`spec/kv-format.md`): how a prefill hands its cache to a decode elsewhere.

One cache is one contiguous buffer: a 128-byte little-endian header, then one chunk per layer, each chunk K then
V as [kv_heads, tokens, head_dim] row-major in the cache's dtype, every chunk starting on a 64-byte boundary.
Only the `tokens` filled slots travel, so the reader may hold the cache at any capacity >= tokens. On one node
the buffer lives in POSIX shared memory (`multiprocessing.shared_memory`), named by the writer; the engine
unlinks it once the request no longer needs it. Across nodes (RayEngine) the same buffer, as bytes, travels
through the Ray object store and is put back into a segment on the reader's node.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

MAGIC = b"HKV1"
VERSION = 1
HEADER_BYTES = 128
ALIGN = 64
# magic, version, dtype code, layers, kv_heads, head_dim, tokens, chunk bytes, model id (64 bytes, NUL padded)
_HEADER = struct.Struct("<4sHHIIIIQ64s")
DTYPE_CODES = {"fp32": 1, "fp16": 2, "bf16": 3}
NUMPY_DTYPES = {"fp32": np.float32, "fp16": np.float16}  # the dtypes a cache holds, as numpy reads them


@dataclass(frozen=True)
class KVHeader:
    model: str
    dtype: str
    layers: int
    kv_heads: int
    head_dim: int
    tokens: int

    @property
    def chunk_bytes(self) -> int:
        raw = 2 * self.kv_heads * self.tokens * self.head_dim * np.dtype(NUMPY_DTYPES[self.dtype]).itemsize
        return -(-raw // ALIGN) * ALIGN

    @property
    def total_bytes(self) -> int:
        return HEADER_BYTES + self.layers * self.chunk_bytes

    def pack(self) -> bytes:
        packed = _HEADER.pack(MAGIC, VERSION, DTYPE_CODES[self.dtype], self.layers, self.kv_heads, self.head_dim,
                              self.tokens, self.chunk_bytes, self.model.encode()[:64])
        return packed.ljust(HEADER_BYTES, b"\0")

    @classmethod
    def unpack(cls, buffer) -> "KVHeader":
        magic, version, code, layers, heads, dim, tokens, chunk, model = _HEADER.unpack_from(buffer)
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"not a hetagent KV cache (magic {magic!r}, version {version})")
        dtype = {v: k for k, v in DTYPE_CODES.items()}[code]
        header = cls(model.rstrip(b"\0").decode(), dtype, layers, heads, dim, tokens)
        if header.chunk_bytes != chunk:
            raise ValueError(f"KV header: chunk bytes {chunk} disagree with the shape ({header.chunk_bytes})")
        return header


@dataclass(frozen=True)
class KVHandle:
    """What travels in place of the cache: the shared-memory segment's name and its header, with where the cache
    came from and how long staging it out of that device took (the run report shows each transfer)."""

    segment: str
    header: KVHeader
    device: str = ""  # the device profile whose prefill wrote it
    store_s: float = 0.0  # device -> host -> this layout in shared memory


def _untracked(segment: shared_memory.SharedMemory) -> shared_memory.SharedMemory:
    # Python < 3.13 tracks every attached segment and unlinks it when the attaching process exits; the engine
    # owns the lifetime instead (a worker dying must not destroy a cache that a retry still needs).
    resource_tracker.unregister(segment._name, "shared_memory")
    return segment


def segment_name(run_id: str, task: int) -> str:
    """The segment a prefill task writes: unique per run and dispatch (a retry is a new dispatch), and
    unguessable (names in /dev/shm are visible to every user: a predictable one could be taken first)."""
    return f"{run_id}-kv-{task}-{secrets.token_hex(6)}"


def _create(segment: str, size: int) -> shared_memory.SharedMemory:
    """A new segment named `segment`, or, if that name is taken, a fresh name of the same task."""
    for attempt in range(4):
        try:
            return _untracked(shared_memory.SharedMemory(name=segment, create=True, size=size))
        except FileExistsError:
            if attempt == 3:
                raise
            segment = f"{segment.rsplit('-', 1)[0]}-{secrets.token_hex(6)}"


def unlink_task(run_id: str, task: int) -> None:
    """Free every segment task `task` of the run may have begun (its name has a random part)."""
    for path in Path("/dev/shm").glob(f"{run_id}-kv-{task}-*"):
        unlink(path.name)


def write(kv: np.ndarray, length: int, *, model: str, dtype: str, segment: str, batch_index: int = 0,
          device: str = "") -> KVHandle:
    """Write slots [0, length) of sequence `batch_index` of a kernel cache kv[L, 2, B, Hkv, S, D]."""
    layers, _, _, heads, _, dim = kv.shape
    header = KVHeader(model, dtype, layers, heads, dim, length)
    shm = _create(segment, header.total_bytes)
    try:
        shm.buf[:HEADER_BYTES] = header.pack()
        for layer in range(layers):
            chunk = np.ndarray((2, heads, length, dim), dtype=kv.dtype, buffer=shm.buf,
                               offset=HEADER_BYTES + layer * header.chunk_bytes)
            chunk[...] = kv[layer, :, batch_index, :, :length, :]
    finally:
        shm.close()
    return KVHandle(shm.name, header, device)


def read_into(handle: KVHandle, kv: np.ndarray, batch_index: int = 0) -> KVHeader:
    """Copy a shared cache into sequence `batch_index` of kv[L, 2, B, Hkv, S, D]; slots past it are left as is."""
    shm = _untracked(shared_memory.SharedMemory(name=handle.segment))
    try:
        header = KVHeader.unpack(shm.buf)
        layers, _, _, heads, capacity, dim = kv.shape
        if (header.layers, header.kv_heads, header.head_dim) != (layers, heads, dim) or header.tokens > capacity:
            raise ValueError(f"KV cache of {header.model} ({header.layers} layers, {header.kv_heads} kv heads, "
                             f"{header.tokens} tokens) does not fit a cache of shape {list(kv.shape)}")
        for layer in range(layers):
            chunk = np.ndarray((2, heads, header.tokens, dim), dtype=NUMPY_DTYPES[header.dtype], buffer=shm.buf,
                               offset=HEADER_BYTES + layer * header.chunk_bytes)
            kv[layer, :, batch_index, :, :header.tokens, :] = chunk
        return header
    finally:
        shm.close()


def read_buffer(handle: KVHandle) -> bytes:
    """The whole cache as one buffer (header and chunks): what crosses nodes through the Ray object store."""
    shm = _untracked(shared_memory.SharedMemory(name=handle.segment))
    try:
        return bytes(shm.buf[:handle.header.total_bytes])
    finally:
        shm.close()


def write_buffer(buffer, segment: str) -> KVHandle:
    """Put a cache buffer that came from another node into a segment of this node, checking its header."""
    header = KVHeader.unpack(buffer)
    if len(buffer) < header.total_bytes:
        raise ValueError(f"KV buffer of {len(buffer)} bytes is shorter than its header says ({header.total_bytes})")
    shm = _create(segment, header.total_bytes)
    try:
        shm.buf[:header.total_bytes] = memoryview(buffer)[:header.total_bytes]
    finally:
        shm.close()
    return KVHandle(shm.name, header)


def unlink(segment: str) -> None:
    """Free a segment; one already gone is fine (a retried prefill may have replaced it)."""
    try:
        shm = shared_memory.SharedMemory(name=segment)
    except FileNotFoundError:
        return
    shm.close()
    shm.unlink()  # attaching registered it with the tracker, unlinking unregisters it: balanced
