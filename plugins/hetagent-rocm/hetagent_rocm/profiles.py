"""AMD Instinct device profiles: dense figures from AMD's data sheets.

AMD prints dense and with-sparsity rates as separate rows; these are the dense rows as printed. Links are GB/s
per direction: AMD quotes Infinity Fabric per link and as a bidirectional aggregate, halved here.
"""

from __future__ import annotations

from hetagent.hardware.device import DeviceProfile, Link

BACKEND = "rocm"

# 8-GPU platforms are fully connected: each GPU has 7 links, one to each peer.
_INFINITY_FABRIC = Link("AMD Infinity Fabric (7 links, fully connected 8-GPU platform)", 448.0)
_INFINITY_FABRIC_SOURCE = (
    "{sheet}: 7 Infinity Fabric links × 128 GB/s bidirectional = 896 GB/s aggregate -> 448 GB/s per direction "
    "(64 GB/s per direction to any single peer)"
)
_NIC_400G = Link("400 Gb/s RoCE/InfiniBand NIC per GPU", 50.0)
_NIC_400G_SOURCE = "typical deployment assumption: one 400 Gb/s NIC per GPU = 50 GB/s per direction"
_PEAKS = {"fp64": 163.4, "fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9, "int8": 2614.9}
_PEAKS_SOURCE = (
    "{sheet}, dense rows: FP64 matrix 163.4, FP32 matrix 163.4, TF32 653.7, FP16/BF16 1,307.4, FP8 2,614.9, "
    "INT8 2,614.9 TOPS"
)

MI300X = DeviceProfile(
    name="mi300x",
    display_name="AMD Instinct MI300X 192GB (OAM)",
    vendor="amd",
    kind="gpu",
    backend=BACKEND,
    peak_tflops=_PEAKS,
    memory_gb=192.0,
    memory_bandwidth_gbs=5300.0,
    tdp_w=750.0,
    scale_up=_INFINITY_FABRIC,
    scale_out=_NIC_400G,
    ray_accelerator_type="AMD-Instinct-MI300X-OAM",
    arch="gfx942",
    sources={
        "peak_tflops": _PEAKS_SOURCE.format(sheet="AMD Instinct MI300X accelerator data sheet"),
        "memory_gb": "AMD Instinct MI300X data sheet: 192 GB HBM3",
        "memory_bandwidth_gbs": "AMD Instinct MI300X data sheet: 5.3 TB/s peak",
        "tdp_w": "AMD Instinct MI300X data sheet: 750 W total board power",
        "scale_up": _INFINITY_FABRIC_SOURCE.format(sheet="AMD Instinct MI300X data sheet"),
        "scale_out": _NIC_400G_SOURCE,
        "ray_accelerator_type": "ray.util.accelerators.AMD_INSTINCT_MI300x, set by Ray's AMD detection for PCI "
        "device id 0x74a1",
    },
    notes="A ring all-reduce over all 8 GPUs uses every link; a transfer between two GPUs gets one link "
    "(64 GB/s per direction).",
)

MI325X = DeviceProfile(
    name="mi325x",
    display_name="AMD Instinct MI325X 256GB (OAM)",
    vendor="amd",
    kind="gpu",
    backend=BACKEND,
    peak_tflops=_PEAKS,
    memory_gb=256.0,
    memory_bandwidth_gbs=6000.0,
    tdp_w=1000.0,
    scale_up=_INFINITY_FABRIC,
    scale_out=_NIC_400G,
    ray_accelerator_type=None,
    arch="gfx942",
    sources={
        "peak_tflops": _PEAKS_SOURCE.format(sheet="AMD Instinct MI325X accelerator data sheet"),
        "memory_gb": "AMD Instinct MI325X data sheet: 256 GB HBM3E",
        "memory_bandwidth_gbs": "AMD Instinct MI325X data sheet: 6 TB/s peak",
        "tdp_w": "AMD Instinct MI325X data sheet: 1,000 W total board power",
        "scale_up": _INFINITY_FABRIC_SOURCE.format(sheet="AMD Instinct MI325X data sheet"),
        "scale_out": _NIC_400G_SOURCE,
    },
    notes="Same CDNA 3 compute as MI300X (gfx942, same peaks); more and faster HBM. Ray defines no accelerator "
    "type for it (its AMD detection does not know PCI id 0x74a5): schedule on the custom resource.",
)

PROFILES = (MI300X, MI325X)
