"""The KV-cache exchange format (`spec/kv-format.md`): how a prefill hands its cache to a decode elsewhere.

One cache is one contiguous buffer: a 128-byte little-endian header, then one chunk per layer, each chunk K then
V as [kv_heads, tokens, head_dim] row-major in the cache's dtype, every chunk starting on a 64-byte boundary.
Only the `tokens` filled slots travel, so the reader may hold the cache at any capacity >= tokens. On one node
the buffer lives in POSIX shared memory (`shm_open`, as `multiprocessing.shared_memory` does), named by the
writer; the engine unlinks it once the request no longer needs it. Across nodes (RayEngine) the same buffer, as
bytes, travels through the Ray object store and is put back into a segment on the reader's node.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

import _posixshmem  # CPython's POSIX shared memory: what multiprocessing.shared_memory is built on

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


def _open(segment: str, size: int | None = None) -> mmap.mmap:
    """Segment `segment` mapped, created with `size` bytes when given (an existing name: FileExistsError). Not
    registered with multiprocessing's resource tracker, as `SharedMemory` (Python < 3.13) would: the tracker unlinks
    a segment when the process that attached it exits, but the engine owns the lifetime (a worker dying must not
    destroy a cache that a retry still needs), and each register and unregister is a message to the tracker
    process — unlinking a request's caches took the router 0.75 ms each."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if size is not None else 0)
    fd = _posixshmem.shm_open("/" + segment, flags, mode=0o600)
    try:
        if size is not None:
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size if size is not None else os.fstat(fd).st_size)
    except BaseException:
        if size is not None:
            _posixshmem.shm_unlink("/" + segment)
        raise
    finally:
        os.close(fd)


def segment_name(run_id: str, task: int) -> str:
    """The segment a prefill task writes: unique per run and dispatch (a retry is a new dispatch), and
    unguessable (names in /dev/shm are visible to every user: a predictable one could be taken first)."""
    return f"{run_id}-kv-{task}-{secrets.token_hex(6)}"


def _create(segment: str, size: int) -> tuple[mmap.mmap, str]:
    """A new segment named `segment`, or, if that name is taken, a fresh name of the same task; and its name."""
    for attempt in range(4):
        try:
            return _open(segment, size), segment
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
    shm, segment = _create(segment, header.total_bytes)
    try:
        shm[:HEADER_BYTES] = header.pack()
        for layer in range(layers):
            chunk = np.ndarray((2, heads, length, dim), dtype=kv.dtype, buffer=shm,
                               offset=HEADER_BYTES + layer * header.chunk_bytes)
            chunk[...] = kv[layer, :, batch_index, :, :length, :]
    finally:
        shm.close()
    return KVHandle(segment, header, device)


def read_into(handle: KVHandle, kv: np.ndarray, batch_index: int = 0) -> KVHeader:
    """Copy a shared cache into sequence `batch_index` of kv[L, 2, B, Hkv, S, D]; slots past it are left as is."""
    shm = _open(handle.segment)
    try:
        header = KVHeader.unpack(shm)
        layers, _, _, heads, capacity, dim = kv.shape
        if (header.layers, header.kv_heads, header.head_dim) != (layers, heads, dim) or header.tokens > capacity:
            raise ValueError(f"KV cache of {header.model} ({header.layers} layers, {header.kv_heads} kv heads, "
                             f"{header.tokens} tokens) does not fit a cache of shape {list(kv.shape)}")
        for layer in range(layers):
            chunk = np.ndarray((2, heads, header.tokens, dim), dtype=NUMPY_DTYPES[header.dtype], buffer=shm,
                               offset=HEADER_BYTES + layer * header.chunk_bytes)
            kv[layer, :, batch_index, :, :header.tokens, :] = chunk
        return header
    finally:
        shm.close()


def read_buffer(handle: KVHandle) -> bytes:
    """The whole cache as one buffer (header and chunks): what crosses nodes through the Ray object store."""
    shm = _open(handle.segment)
    try:
        return shm[:handle.header.total_bytes]
    finally:
        shm.close()


def write_buffer(buffer, segment: str) -> KVHandle:
    """Put a cache buffer that came from another node into a segment of this node, checking its header."""
    header = KVHeader.unpack(buffer)
    if len(buffer) < header.total_bytes:
        raise ValueError(f"KV buffer of {len(buffer)} bytes is shorter than its header says ({header.total_bytes})")
    shm, segment = _create(segment, header.total_bytes)
    try:
        shm[:header.total_bytes] = memoryview(buffer)[:header.total_bytes]
    finally:
        shm.close()
    return KVHandle(segment, header)


def unlink(segment: str) -> None:
    """Free a segment; one already gone is fine (a retried prefill may have replaced it)."""
    try:
        _posixshmem.shm_unlink("/" + segment)
    except FileNotFoundError:
        pass
