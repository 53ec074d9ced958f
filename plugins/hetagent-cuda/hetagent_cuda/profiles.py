"""NVIDIA device profiles: dense figures from NVIDIA's datasheets.

NVIDIA's sheets print Tensor Core rates "with sparsity" (2:4 structured); a dense figure is that number ÷ 2,
which is what we store. Where DESIGN §5 rounds a half (989.5 -> 989), we keep its rounding so every part of
hetagent quotes the same number. Links are GB/s per direction: NVIDIA quotes NVLink as a bidirectional
aggregate, halved here.

`ray_accelerator_type` is the label Ray's NVIDIA detection puts on a node: the model token of the driver's
device name ("NVIDIA H100 80GB HBM3" -> "H100"), a superset of the constants in `ray.util.accelerators`.
"""

from __future__ import annotations

from hetagent.hardware.device import DeviceProfile, Link

BACKEND = "cuda"
_RAY = "Ray's NVIDIA node label: the model token of the driver's device name"

_NIC_400G = Link("400 Gb/s InfiniBand/RoCE NIC per GPU", 50.0)
_NIC_400G_SOURCE = (
    "typical deployment assumption: one 400 Gb/s ConnectX-7 NIC per GPU, as in DGX H100/H200/B200 = 50 GB/s "
    "per direction"
)
_NIC_100G = Link("100 Gb/s Ethernet NIC per GPU", 12.5)
_NIC_100G_SOURCE = (
    "typical deployment assumption for PCIe-card servers: one 100 Gb/s NIC per GPU = 12.5 GB/s per direction"
)
_PCIE4 = Link("PCIe 4.0 x16", 32.0)


def _gpu(**fields) -> DeviceProfile:
    return DeviceProfile(vendor="nvidia", kind="gpu", backend=BACKEND, **fields)


A40 = _gpu(
    name="a40",
    display_name="NVIDIA A40 48GB (PCIe)",
    peak_tflops={"fp32": 37.4, "tf32": 74.8, "bf16": 149.7, "fp16": 149.7, "int8": 299.3},
    memory_gb=48.0,
    memory_bandwidth_gbs=696.0,
    tdp_w=300.0,
    scale_up=Link("NVLink 3 bridge (2-way)", 56.25),
    scale_out=_NIC_100G,
    ray_accelerator_type="A40",
    arch="sm_86",
    sources={
        "peak_tflops": "NVIDIA A40 datasheet, dense column: FP32 37.4, TF32 74.8 (149.6 sparse), BF16/FP16 149.7 "
        "(299.4 sparse), INT8 299.3 TOPS (598.6 sparse)",
        "memory_gb": "NVIDIA A40 datasheet: 48 GB GDDR6 with ECC",
        "memory_bandwidth_gbs": "NVIDIA A40 datasheet: 696 GB/s",
        "tdp_w": "NVIDIA A40 datasheet: max power consumption 300 W",
        "scale_up": "NVIDIA A40 datasheet: 2-way NVLink bridge, 112.5 GB/s bidirectional -> 56.25 GB/s per direction",
        "scale_out": _NIC_100G_SOURCE,
        "ray_accelerator_type": _RAY + " ('NVIDIA A40'); no constant in ray.util.accelerators",
    },
    notes="NVLink joins pairs of cards only; groups beyond 2 talk over PCIe 4.0 x16 (32 GB/s per direction).",
)

A100_80GB_SXM = _gpu(
    name="a100-80gb-sxm",
    display_name="NVIDIA A100 80GB SXM4",
    peak_tflops={"fp64": 19.5, "fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
    memory_gb=80.0,
    memory_bandwidth_gbs=2039.0,
    tdp_w=400.0,
    scale_up=Link("NVLink 3", 300.0),
    scale_out=Link("200 Gb/s HDR InfiniBand NIC per GPU", 25.0),
    ray_accelerator_type="A100",
    arch="sm_80",
    sources={
        "peak_tflops": "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM column, dense: FP64 Tensor 19.5, FP32 "
        "19.5, TF32 156 (312 sparse), BF16/FP16 312 (624 sparse), INT8 624 TOPS (1,248 sparse)",
        "memory_gb": "NVIDIA A100 datasheet, 80GB SXM: 80 GB HBM2e",
        "memory_bandwidth_gbs": "NVIDIA A100 datasheet, 80GB SXM: 2,039 GB/s",
        "tdp_w": "NVIDIA A100 datasheet, SXM: max TDP 400 W",
        "scale_up": "NVIDIA A100 datasheet, SXM: NVLink 600 GB/s bidirectional -> 300 GB/s per direction",
        "scale_out": "typical deployment assumption: one 200 Gb/s HDR ConnectX-6 NIC per GPU, as in DGX A100 "
        "= 25 GB/s per direction",
        "ray_accelerator_type": _RAY + " ('NVIDIA A100-SXM4-80GB' -> 'A100'); ray.util.accelerators also defines "
        "'A100-80G', which Ray never sets on a node by itself",
    },
    notes="No FP8 Tensor Cores (Ampere): FP8 models run in FP16/BF16 on this device.",
)

H100_SXM = _gpu(
    name="h100-sxm",
    display_name="NVIDIA H100 80GB SXM5",
    peak_tflops={
        "fp64": 67.0,
        "fp32": 67.0,
        "tf32": 494.5,
        "bf16": 989.0,
        "fp16": 989.0,
        "fp8": 1979.0,
        "int8": 1979.0,
    },
    memory_gb=80.0,
    memory_bandwidth_gbs=3350.0,
    tdp_w=700.0,
    scale_up=Link("NVLink 4", 450.0),
    scale_out=_NIC_400G,
    ray_accelerator_type="H100",
    arch="sm_90",
    sources={
        "peak_tflops": "NVIDIA H100 Tensor Core GPU datasheet, SXM column, dense = with-sparsity ÷ 2: TF32 989 -> "
        "494.5, BF16/FP16 1,979 -> 989, FP8/INT8 3,958 -> 1,979; FP32 67 and FP64 Tensor Core 67 as printed",
        "memory_gb": "NVIDIA H100 datasheet, SXM: 80 GB HBM3",
        "memory_bandwidth_gbs": "NVIDIA H100 datasheet, SXM: 3.35 TB/s",
        "tdp_w": "NVIDIA H100 datasheet, SXM: max TDP up to 700 W (configurable)",
        "scale_up": "NVIDIA H100 datasheet, SXM: NVLink 900 GB/s bidirectional aggregate (18 NVLink 4 links) "
        "-> 450 GB/s per direction",
        "scale_out": _NIC_400G_SOURCE,
        "ray_accelerator_type": _RAY + " ('NVIDIA H100 80GB HBM3'); constant ray.util.accelerators.NVIDIA_H100",
    },
    notes="The paper's table quotes 1,979 for H100: that is the FP8 dense (or BF16 sparse) figure, not BF16 dense.",
)

H200_SXM = _gpu(
    name="h200-sxm",
    display_name="NVIDIA H200 141GB SXM5",
    peak_tflops={
        "fp64": 67.0,
        "fp32": 67.0,
        "tf32": 494.5,
        "bf16": 989.0,
        "fp16": 989.0,
        "fp8": 1979.0,
        "int8": 1979.0,
    },
    memory_gb=141.0,
    memory_bandwidth_gbs=4800.0,
    tdp_w=700.0,
    scale_up=Link("NVLink 4", 450.0),
    scale_out=_NIC_400G,
    ray_accelerator_type="H200",
    arch="sm_90",
    sources={
        "peak_tflops": "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column, dense = with-sparsity ÷ 2: TF32 989 "
        "-> 494.5, BF16/FP16 1,979 -> 989, FP8/INT8 3,958 -> 1,979; FP32 67 and FP64 Tensor Core 67 as printed",
        "memory_gb": "NVIDIA H200 datasheet, SXM: 141 GB HBM3e",
        "memory_bandwidth_gbs": "NVIDIA H200 datasheet, SXM: 4.8 TB/s",
        "tdp_w": "NVIDIA H200 datasheet, SXM: max TDP up to 700 W (configurable)",
        "scale_up": "NVIDIA H200 datasheet, SXM: NVLink 900 GB/s bidirectional aggregate -> 450 GB/s per direction",
        "scale_out": _NIC_400G_SOURCE,
        "ray_accelerator_type": _RAY + " ('NVIDIA H200'); constant ray.util.accelerators.NVIDIA_H200",
    },
    notes="Same Hopper die and clocks as H100 SXM: more and faster memory, identical compute peaks.",
)

B200 = _gpu(
    name="b200",
    display_name="NVIDIA B200 (HGX/DGX B200)",
    peak_tflops={
        "fp64": 37.0,
        "fp32": 75.0,
        "tf32": 1125.0,
        "bf16": 2250.0,
        "fp16": 2250.0,
        "fp8": 4500.0,
        "int8": 4500.0,
        "fp4": 9000.0,
    },
    memory_gb=192.0,
    memory_bandwidth_gbs=8000.0,
    tdp_w=1000.0,
    scale_up=Link("NVLink 5", 900.0),
    scale_out=_NIC_400G,
    ray_accelerator_type="B200",
    arch="sm_100",
    sources={
        "peak_tflops": "NVIDIA HGX B200 specifications (8-GPU board) ÷ 8, dense = with-sparsity ÷ 2: FP4 144 PF -> "
        "9,000, FP8/INT8 72 PF -> 4,500, BF16/FP16 36 PF -> 2,250, TF32 18 PF -> 1,125; FP32 600 TF -> 75, "
        "FP64 296 TF -> 37",
        "memory_gb": "NVIDIA B200: 192 GB HBM3e (the paper's table uses 192; HGX/DGX B200 sheets list 180 GB per GPU, "
        "1.44 TB per board)",
        "memory_bandwidth_gbs": "NVIDIA HGX B200 specifications: 64 TB/s per 8 GPUs = 8 TB/s per GPU",
        "tdp_w": "NVIDIA B200 (HGX/DGX B200): 1,000 W per GPU",
        "scale_up": "NVIDIA HGX B200 specifications: NVLink 5, 1.8 TB/s bidirectional per GPU -> 900 GB/s per "
        "direction",
        "scale_out": _NIC_400G_SOURCE,
        "ray_accelerator_type": _RAY + " ('NVIDIA B200'); no constant in ray.util.accelerators",
    },
    notes="Memory: 192 GB is the HBM3e on the package; HGX/DGX B200 systems are specified at 180 GB per GPU. "
    "Plans that fill memory above 180 GB will not fit those systems.",
)

L40S = _gpu(
    name="l40s",
    display_name="NVIDIA L40S 48GB (PCIe)",
    peak_tflops={"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0, "fp8": 733.0, "int8": 733.0},
    memory_gb=48.0,
    memory_bandwidth_gbs=864.0,
    tdp_w=350.0,
    scale_up=_PCIE4,
    scale_out=_NIC_100G,
    ray_accelerator_type="L40S",
    arch="sm_89",
    sources={
        "peak_tflops": "NVIDIA L40S datasheet, dense = with-sparsity ÷ 2: TF32 366 -> 183, BF16/FP16 733 -> 362 "
        "(sheet's dense 362.05), FP8/INT8 1,466 -> 733; FP32 91.6 as printed",
        "memory_gb": "NVIDIA L40S datasheet: 48 GB GDDR6 with ECC",
        "memory_bandwidth_gbs": "NVIDIA L40S datasheet: 864 GB/s",
        "tdp_w": "NVIDIA L40S datasheet: max power consumption 350 W",
        "scale_up": "NVIDIA L40S datasheet: no NVLink; PCIe Gen4 x16, 64 GB/s bidirectional -> 32 GB/s per direction",
        "scale_out": _NIC_100G_SOURCE,
        "ray_accelerator_type": _RAY + " ('NVIDIA L40S'); constant ray.util.accelerators.NVIDIA_L40S",
    },
)

L4 = _gpu(
    name="l4",
    display_name="NVIDIA L4 24GB (PCIe, low profile)",
    peak_tflops={"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "fp8": 242.0, "int8": 242.5},
    memory_gb=24.0,
    memory_bandwidth_gbs=300.0,
    tdp_w=72.0,
    scale_up=_PCIE4,
    scale_out=_NIC_100G,
    ray_accelerator_type="L4",
    arch="sm_89",
    sources={
        "peak_tflops": "NVIDIA L4 datasheet, dense = with-sparsity ÷ 2: TF32 120 -> 60, BF16/FP16 242 -> 121, "
        "INT8 485 -> 242.5; FP32 30.3 as printed",
        "peak_tflops.fp8": "NVIDIA L4 datasheet: FP8 485 with sparsity ÷ 2 = 242.5, rounded to 242 as in DESIGN §5",
        "memory_gb": "NVIDIA L4 datasheet: 24 GB GDDR6",
        "memory_bandwidth_gbs": "NVIDIA L4 datasheet: 300 GB/s",
        "tdp_w": "NVIDIA L4 datasheet: max power consumption 72 W",
        "scale_up": "NVIDIA L4 datasheet: no NVLink; PCIe Gen4 x16, 64 GB/s bidirectional -> 32 GB/s per direction",
        "scale_out": _NIC_100G_SOURCE,
        "ray_accelerator_type": _RAY + " ('NVIDIA L4'); constant ray.util.accelerators.NVIDIA_L4",
    },
)

PROFILES = (A40, A100_80GB_SXM, H100_SXM, H200_SXM, B200, L40S, L4)
