"""CPU device profiles: two reference server CPUs from their spec sheets, and `host-cpu` from measurement.

Reference peaks are per socket and computed as cores × sustained all-core clock × FLOP per cycle per core; the
arithmetic is in each source. We take the base clock as the sustained clock under heavy vector/matrix load
(turbo is not guaranteed with every core busy). Memory capacity depends on how a server is populated: the
reference figures assume one 64 GB RDIMM per channel.
"""

from __future__ import annotations

from hetagent.hardware.device import DeviceProfile, Link

from hetagent_cpu.detect import PROFILE as HOST_PROFILE
from hetagent_cpu.detect import HostCPU

BACKEND = "cpu"
HOST_TDP_W_PER_CORE = 10.0  # the OS cannot tell the TDP; ~10 W per logical CPU is typical of servers

_NIC_100G = Link("100 Gb/s Ethernet NIC", 12.5)
_NIC_100G_SOURCE = "typical deployment assumption: one 100 Gb/s Ethernet NIC per CPU server = 12.5 GB/s per direction"

XEON_6980P = DeviceProfile(
    name="xeon-6980p",
    display_name="Intel Xeon 6980P (Granite Rapids-AP, 1 socket)",
    vendor="intel",
    kind="cpu",
    backend=BACKEND,
    peak_tflops={"fp64": 8.192, "fp32": 16.384, "bf16": 262.144, "fp16": 262.144, "int8": 524.288},
    memory_gb=768.0,
    memory_bandwidth_gbs=614.4,
    tdp_w=500.0,
    scale_out=_NIC_100G,
    arch="graniterapids",
    cores=128,
    features=tuple(
        "fma f16c avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8 amx_fp16".split()
    ),
    sources={
        "peak_tflops.bf16": "Intel Xeon 6980P spec (128 cores, 2.0 GHz base) and Intel AMX: 1024 BF16 FLOP/cycle/core "
        "(TDPBF16PS, 16x16x32 MACs per 16 cycles); 128 cores × 2.0 GHz × 1024 = 262.144 TFLOPS",
        "peak_tflops.fp16": "same as BF16: Granite Rapids adds AMX-FP16 at the BF16 rate; "
        "128 × 2.0 GHz × 1024 = 262.144 TFLOPS",
        "peak_tflops.int8": "Intel AMX: 2048 INT8 ops/cycle/core (TDPBSSD); 128 × 2.0 GHz × 2048 = 524.288 TOPS",
        "peak_tflops.fp32": "AVX-512, 2 FMA ports × 16 FP32 lanes × 2 FLOP = 64 FLOP/cycle/core; "
        "128 × 2.0 GHz × 64 = 16.384 TFLOPS",
        "peak_tflops.fp64": "AVX-512, 2 FMA ports × 8 FP64 lanes × 2 FLOP = 32 FLOP/cycle/core; "
        "128 × 2.0 GHz × 32 = 8.192 TFLOPS",
        "memory_gb": "assumption: 12 channels × one 64 GB DDR5 RDIMM = 768 GB",
        "memory_bandwidth_gbs": "Intel Xeon 6980P spec: 12 channels DDR5-6400; 12 × 6400 MT/s × 8 B = 614.4 GB/s "
        "(MRDIMM-8800 would give 844.8 GB/s; we take standard RDIMMs)",
        "tdp_w": "Intel Xeon 6980P spec: TDP 500 W",
        "scale_out": _NIC_100G_SOURCE,
    },
    notes="Per socket. The 1024 FLOP/cycle AMX rate is reached only by large BF16/FP16 GEMMs through oneDNN-style "
    "kernels; plain AVX-512 code runs at the FP32 rate.",
)

EPYC_9654 = DeviceProfile(
    name="epyc-9654",
    display_name="AMD EPYC 9654 (Genoa, 1 socket)",
    vendor="amd",
    kind="cpu",
    backend=BACKEND,
    peak_tflops={"fp64": 3.6864, "fp32": 7.3728, "bf16": 14.7456, "int8": 29.4912},
    memory_gb=768.0,
    memory_bandwidth_gbs=460.8,
    tdp_w=360.0,
    scale_out=_NIC_100G,
    arch="znver4",
    cores=96,
    features=("fma", "f16c", "avx2", "avx512f", "avx512_vnni", "avx512_bf16"),
    sources={
        "peak_tflops.fp32": "AMD EPYC 9654 spec (96 cores, 2.4 GHz base); Zen 4 runs AVX-512 on two 256-bit FMA "
        "pipes: 2 × 8 FP32 lanes × 2 FLOP = 32 FLOP/cycle/core; 96 × 2.4 GHz × 32 = 7.3728 TFLOPS",
        "peak_tflops.fp64": "Zen 4: 2 × 4 FP64 lanes × 2 FLOP = 16 FLOP/cycle/core; 96 × 2.4 GHz × 16 = 3.6864 TFLOPS",
        "peak_tflops.bf16": "Zen 4 AVX512_BF16 (VDPBF16PS, 2 products per FP32 lane): 2 pipes × 8 lanes × 2 × 2 FLOP "
        "= 64 FLOP/cycle/core; 96 × 2.4 GHz × 64 = 14.7456 TFLOPS",
        "peak_tflops.int8": "Zen 4 AVX512_VNNI (VPDPBUSD, 4 products per INT32 lane): 2 pipes × 8 lanes × 4 × 2 ops "
        "= 128 ops/cycle/core; 96 × 2.4 GHz × 128 = 29.4912 TOPS",
        "memory_gb": "assumption: 12 channels × one 64 GB DDR5 RDIMM = 768 GB",
        "memory_bandwidth_gbs": "AMD EPYC 9654 spec: 12 channels DDR5-4800; 12 × 4800 MT/s × 8 B = 460.8 GB/s",
        "tdp_w": "AMD EPYC 9654 spec: default TDP 360 W",
        "scale_out": _NIC_100G_SOURCE,
    },
    notes="Per socket. Zen 4 has no matrix engine: BF16 and INT8 run on the AVX-512 pipes at 2x and 4x the FP32 rate.",
)

REFERENCE_PROFILES = (XEON_6980P, EPYC_9654)


def host_profile(host: HostCPU) -> DeviceProfile:
    """The `host-cpu` profile: this machine as measured by `hetagent_cpu.detect.host_cpu()`."""
    info = host.info
    return DeviceProfile(
        name=HOST_PROFILE,
        display_name=f"{info.model} (this host, {host.cores} logical CPUs)",
        vendor=info.vendor,
        kind="cpu",
        backend=BACKEND,
        peak_tflops={"fp32": float(f"{host.fp32_tflops:.4g}")},
        memory_gb=round(host.memory_gb, 1),
        memory_bandwidth_gbs=float(f"{host.bandwidth_gbs:.4g}"),
        tdp_w=HOST_TDP_W_PER_CORE * host.cores,
        arch=info.arch,
        cores=host.cores,
        features=info.features,
        sources={
            "peak_tflops.fp32": f"measured on this host: best of 3 numpy float32 {host.matmul_n}³ matmuls, 2·n³/t",
            "memory_gb": "measured on this host: MemTotal in /proc/meminfo",
            "memory_bandwidth_gbs": "measured on this host: best of 3 threaded sum() passes over a 256 MiB float32 "
            "array, bytes/t",
            "tdp_w": f"estimate: {HOST_TDP_W_PER_CORE:g} W per logical CPU × {host.cores} (the OS does not expose TDP)",
        },
        notes="Measured with numpy in well under a second: a floor, not a tuned peak. Only fp32 is measured; "
        "run `hetagent calibrate` for per-dtype figures.",
    )
