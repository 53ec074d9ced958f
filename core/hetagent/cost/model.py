"""The `CostModel` protocol: what the planner, the estimator and the TCO study ask of any cost model.

`RooflineModel` (`hetagent.cost.roofline`) is the implementation; a simulator-backed or learned model only has to
answer the same four questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hetagent.hardware.device import DeviceProfile
from hetagent.models.kernels import Kernel

BOUNDS = ("compute", "memory", "overhead", "link")


@dataclass(frozen=True)
class KernelTime:
    """The estimated time of one kernel launch (or one collective / transfer) and what bounds it."""

    seconds: float
    bound: str  # one of BOUNDS: the term that dominates `seconds`
    compute_s: float = 0.0  # FLOPs / achieved FLOP/s
    memory_s: float = 0.0  # bytes / achieved bytes/s (for link-bound work: over the link)
    fixed_s: float = 0.0  # the per-kernel floor (launch, ramp, collective latency)
    basis: str = ""  # where the efficiency came from: "measured", "extrapolated from h100-sxm", "table ..."


@runtime_checkable
class CostModel(Protocol):
    def profile(self, device: str) -> DeviceProfile:
        """The device's profile; unknown names raise `HetagentError` naming the close matches."""

    def kernel_time(self, device: str, kernel: Kernel, dtype: str, tp: int = 1) -> KernelTime:
        """One launch of `kernel` on one of `tp` devices (an all-reduce kernel runs among the `tp`)."""

    def transfer_time(self, src: str, dst: str, nbytes: float) -> KernelTime:
        """Moving `nbytes` (a KV cache) from a `src` device to a `dst` device over the link between them."""

    def cache_bytes(self, device: str) -> float:
        """The last-level cache the device's cache-resident curves were measured with; 0 where it has none (every
        pass is timed as streaming from memory)."""
