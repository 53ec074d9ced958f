"""Host CPU detection: what the OS says about the CPU, plus two quick measurements.

Memory bandwidth and fp32 peak are measured rather than looked up: the same CPU model delivers very different
figures depending on populated memory channels, SMT, cgroup CPU limits and the BLAS build, and the planner
wants what this host delivers. Both measurements together stay under ~0.5 s and run once per process.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hetagent.backend import DetectedDevice, Detection

BACKEND = "cpu"
PROFILE = "host-cpu"

# ISA flags the lowering and the cost model care about, spelled as /proc/cpuinfo spells them.
X86_FEATURES = tuple(
    "fma f16c avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8 amx_fp16".split()
)
# AArch64 /proc/cpuinfo names -> ours ("asimd" is what Linux calls NEON).
ARM_FEATURES = {"asimd": "neon", "sve": "sve", "sve2": "sve2", "bf16": "bf16", "i8mm": "i8mm"}
# x86-64 psABI levels, which LLVM accepts as CPU names: a portable target for "this host".
_X86_LEVELS = (
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    ("x86-64-v3", {"avx2", "bmi1", "bmi2", "fma", "f16c", "movbe", "xsave"}),
    ("x86-64-v2", {"cx16", "popcnt", "sse4_1", "sse4_2", "ssse3"}),
)
_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon"}

BANDWIDTH_BYTES = 256 << 20  # well beyond any last-level cache a server CPU has per socket
BANDWIDTH_PASSES = 3
MATMUL_N = 1024
MATMUL_PASSES = 3


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says (pure data, so parsing is testable on sample text)."""

    model: str
    vendor: str
    flags: frozenset[str]

    @property
    def features(self) -> tuple[str, ...]:
        ours = [f for f in X86_FEATURES if f in self.flags]
        ours += [name for flag, name in ARM_FEATURES.items() if flag in self.flags]
        return tuple(ours)

    @property
    def arch(self) -> str:
        if self.vendor == "arm" or "asimd" in self.flags:
            return "generic"  # LLVM's AArch64 baseline; the exact core is not worth guessing from cpuinfo
        for level, needs in _X86_LEVELS:
            if needs <= self.flags:
                return level
        return "x86-64"


@dataclass(frozen=True)
class HostCPU:
    """One measured host: the facts behind the `host-cpu` profile and the cpu backend's detection."""

    info: CpuInfo
    cores: int  # logical CPUs this process may run on
    memory_gb: float
    bandwidth_gbs: float  # measured: streaming read over BANDWIDTH_BYTES
    fp32_tflops: float  # measured: best numpy float32 matmul
    matmul_n: int


def parse_cpuinfo(text: str) -> CpuInfo:
    """Model, vendor and flags from /proc/cpuinfo text (x86 `flags`, AArch64 `Features`)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor block speaks for all
            fields[key.strip()] = value.strip()
    vendor_id = fields.get("vendor_id", "")
    if vendor_id:
        vendor = _VENDORS.get(vendor_id, vendor_id.lower())
    elif "CPU implementer" in fields or platform.machine().lower() in ("aarch64", "arm64"):
        vendor = "arm"
    else:
        vendor = "unknown"
    model = fields.get("model name") or fields.get("Model") or platform.processor() or platform.machine()
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").split())
    return CpuInfo(model=model or "unknown CPU", vendor=vendor, flags=flags)


def parse_meminfo(text: str) -> float:
    """MemTotal from /proc/meminfo text, in GB (10^9 bytes)."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            kib = int(line.split()[1])
            return kib * 1024 / 1e9
    raise ValueError("no MemTotal line in /proc/meminfo")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _logical_cores() -> int:
    # The affinity mask, not os.cpu_count(): containers and taskset often give us fewer CPUs than the host has.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _memory_gb() -> float:
    try:
        return parse_meminfo(_read("/proc/meminfo"))
    except ValueError:
        # Not Linux: sysconf still knows the physical memory on most Unixes.
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def measure_bandwidth_gbs(threads: int) -> float:
    """Best-of-N streaming read (`sum` over a 256 MiB float32 array split across threads): bytes / seconds.

    numpy releases the GIL inside reductions, so the threads read in parallel as a multi-threaded kernel would.
    """
    import numpy as np  # here, not at module level: loading the backend must stay cheap

    data = np.empty(BANDWIDTH_BYTES // 4, dtype=np.float32)
    chunks = np.array_split(data, threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda c: c.fill(1.0), chunks))  # fault the pages in, in parallel, outside the timing
        best = float("inf")
        for _ in range(BANDWIDTH_PASSES):
            start = time.perf_counter()
            list(pool.map(np.sum, chunks))
            best = min(best, time.perf_counter() - start)
    return data.nbytes / best / 1e9


def measure_fp32_tflops() -> tuple[float, int]:
    """Best-of-N numpy float32 matmul (BLAS, all its threads): 2·n³ / t. Returns (TFLOPS, n)."""
    import numpy as np

    n = MATMUL_N
    a = np.ones((n, n), dtype=np.float32)
    start = time.perf_counter()
    a @ a  # warm-up: BLAS thread pool start, page faults
    if time.perf_counter() - start < 0.005:
        n *= 2  # a big host finishes 1024³ too fast to keep its threads busy; 2048³ is still cheap there
        a = np.ones((n, n), dtype=np.float32)
        a @ a
    best = float("inf")
    for _ in range(MATMUL_PASSES):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12, n


@functools.cache
def cpu_info() -> CpuInfo:
    """What /proc/cpuinfo says about this host (cheap: no measurement)."""
    return parse_cpuinfo(_read("/proc/cpuinfo"))


@functools.cache
def host_cpu() -> HostCPU:
    """Detect and measure this host once per process (the measurements cost ~0.3-0.5 s)."""
    cores = _logical_cores()
    bandwidth = measure_bandwidth_gbs(threads=min(cores, 64))
    fp32, n = measure_fp32_tflops()
    return HostCPU(
        info=cpu_info(),
        cores=cores,
        memory_gb=_memory_gb(),
        bandwidth_gbs=bandwidth,
        fp32_tflops=fp32,
        matmul_n=n,
    )


def detect() -> Detection:
    """The host CPU is always there: one device, `host-cpu`, with what detection found and measured."""
    host = host_cpu()
    device = DetectedDevice(
        profile=PROFILE,
        index=0,
        name=host.info.model,
        memory_gb=round(host.memory_gb, 1),
        details={
            "vendor": host.info.vendor,
            "cores": str(host.cores),
            "features": " ".join(host.info.features),
            "arch": host.info.arch,
            "bandwidth_gbs": f"{host.bandwidth_gbs:.1f}",
            "fp32_tflops": f"{host.fp32_tflops:.3f}",
        },
    )
    return Detection(backend=BACKEND, available=True, devices=(device,))
