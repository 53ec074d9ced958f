"""One GEMM on a device, optionally split over tp devices: the kernel and its all-reduce."""

from __future__ import annotations

from dataclasses import dataclass

from hetagent.cost.model import CostModel, KernelTime
from hetagent.errors import HetagentError
from hetagent.dtypes import BYTES_PER_ELEMENT
from hetagent.models.kernels import Kernel, matmul


@dataclass(frozen=True)
class GemmEstimate:
    device: str
    dtype: str
    m: int
    k: int
    n: int
    tp: int
    kernel: Kernel  # what one device runs
    kernel_time: KernelTime
    allreduce_time: KernelTime

    @property
    def latency_s(self) -> float:
        return self.kernel_time.seconds + self.allreduce_time.seconds

    @property
    def bound(self) -> str:
        return "link" if self.allreduce_time.seconds > self.kernel_time.seconds else self.kernel_time.bound

    def to_dict(self) -> dict:
        return {
            "device": self.device, "dtype": self.dtype, "m": self.m, "k": self.k, "n": self.n, "tp": self.tp,
            "flops_per_device": self.kernel.flops, "bytes_per_device": self.kernel.bytes,
            "latency_s": self.latency_s, "bound": self.bound,
            "compute_s": self.kernel_time.compute_s, "memory_s": self.kernel_time.memory_s,
            "fixed_s": self.kernel_time.fixed_s, "allreduce_s": self.allreduce_time.seconds,
            "achieved_tflops": self.kernel.flops * self.tp / self.latency_s / 1e12,
            "basis": self.kernel_time.basis,
        }


def estimate_gemm(model: CostModel, device: str, m: int, k: int, n: int, dtype: str, tp: int = 1) -> GemmEstimate:
    """(m×k)·(k×n) in `dtype`. With tp > 1 the reduction dimension k is split (Megatron's row-parallel layer):
    each device multiplies m×(k/tp) by (k/tp)×n and an all-reduce of the m×n result over the scale-up link sums
    the partial products."""
    for name, value in (("m", m), ("k", k), ("n", n), ("tp", tp)):
        if not isinstance(value, int) or value <= 0:
            raise HetagentError(f"--{name} = {value!r} must be a positive integer")
    if dtype not in BYTES_PER_ELEMENT:
        raise HetagentError(f"--dtype {dtype!r} is not a dtype; valid: {', '.join(BYTES_PER_ELEMENT)}")
    if k % tp:
        raise HetagentError(f"--tp {tp} must divide --k {k} (the split dimension)")
    b = BYTES_PER_ELEMENT[dtype]
    kernel = matmul("gemm", m, k // tp, n, b, 1)
    allreduce = Kernel("gemm_allreduce", "allreduce", 0.0, m * n * b)
    return GemmEstimate(device, dtype, m, k, n, tp, kernel, model.kernel_time(device, kernel, dtype, tp),
                        model.kernel_time(device, allreduce, dtype, tp))
