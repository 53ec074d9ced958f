"""KV caches between processes and nodes through NIXL (the transfer library Dynamo, llm-d and vLLM use), where
it is installed: an optional transport beside shared memory and Ray's object store (`spec/kv-format.md`).

The unit moved is the kv-format buffer (header and per-layer chunks). The side holding a cache registers it with
its NIXL agent and hands out a `NixlDescriptor` (its agent's metadata, the buffer's address and length: a few
hundred bytes, sent however the caller sends messages); the side that needs it adds the remote agent and READs
the buffer into memory of its own. NIXL picks the wire (UCX: shared memory or TCP on one host, RDMA across
hosts, GPU memory where registered as VRAM); here both ends are DRAM. `nixl` is imported lazily and is optional:
`available()` says whether this process can use it.
"""

from __future__ import annotations

import importlib
import time
import uuid
from dataclasses import dataclass

import numpy as np

from hetagent.errors import HetagentError

# the meta-package's module first, then the CUDA builds it would pull (they import and move DRAM without a GPU)
_MODULES = ("nixl._api", "nixl_cu12._api", "nixl_cu13._api")


def _api():
    for name in _MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise HetagentError("NIXL is not installed: pip install nixl (or nixl-cu12) to move KV caches with it")


def available() -> bool:
    try:
        _api()
    except HetagentError:
        return False
    return True


@dataclass(frozen=True)
class NixlDescriptor:
    """Where a published buffer is: enough for another agent to READ it."""

    agent: str
    metadata: bytes
    address: int
    length: int


class NixlEndpoint:
    """One NIXL agent (UCX backend) of this process, with the buffers it has published or received."""

    def __init__(self, name: str | None = None):
        api = _api()
        self.name = name or f"hetagent-{uuid.uuid4().hex[:12]}"
        self.agent = api.nixl_agent(self.name, api.nixl_agent_config(backends=["UCX"]))
        self._registered: list = []  # registrations and the arrays they pin, alive as long as the endpoint
        self._peers: set[str] = set()

    def _register(self, array: np.ndarray) -> None:
        descs = self.agent.get_reg_descs([(array.ctypes.data, array.nbytes, 0, "")], "DRAM")
        self._registered.append((self.agent.register_memory(descs), array))

    def publish(self, buffer) -> NixlDescriptor:
        """Register a kv-format buffer (copied into memory this endpoint owns) for peers to read."""
        array = np.frombuffer(bytes(buffer), dtype=np.uint8).copy()
        self._register(array)
        return NixlDescriptor(self.name, self.agent.get_agent_metadata(), array.ctypes.data, array.nbytes)

    def fetch(self, descriptor: NixlDescriptor, *, timeout_s: float = 30.0) -> tuple[np.ndarray, float]:
        """READ a peer's published buffer into memory of this endpoint; returns it and the seconds it took."""
        if descriptor.agent not in self._peers:
            self.agent.add_remote_agent(descriptor.metadata)
            self._peers.add(descriptor.agent)
        target = np.empty(descriptor.length, dtype=np.uint8)
        self._register(target)
        local = self.agent.get_xfer_descs([(target.ctypes.data, target.nbytes, 0)], "DRAM")
        remote = self.agent.get_xfer_descs([(descriptor.address, descriptor.length, 0)], "DRAM")
        start = time.perf_counter()
        handle = self.agent.initialize_xfer("READ", local, remote, descriptor.agent)
        state = self.agent.transfer(handle)
        while state not in ("DONE", "ERR"):
            if time.perf_counter() - start > timeout_s:
                raise HetagentError(f"NIXL read of {descriptor.length} bytes from {descriptor.agent} did not finish "
                                    f"within {timeout_s:g} s")
            state = self.agent.check_xfer_state(handle)
        self.agent.release_xfer_handle(handle)
        if state == "ERR":
            raise HetagentError(f"NIXL read of {descriptor.length} bytes from {descriptor.agent} failed")
        return target, time.perf_counter() - start
