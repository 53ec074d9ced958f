"""Intel Gaudi 3 device profiles: the OAM module and the HL-338 PCIe card (the part the paper prices).

Gaudi 3's matrix engines (MME) run BF16 and FP8 at the same dense rate; Intel publishes no dense FP16/TF32/FP32
matrix figure in the sources used here, so those dtypes are left out rather than guessed (an FP16 model runs
in BF16 on Gaudi). Links are GB/s per direction; each integrated RoCE port is 200 Gb/s = 25 GB/s.
"""

from __future__ import annotations

from hetagent.hardware.device import DeviceProfile, Link

BACKEND = "gaudi"
_RAY = (
    "Ray's HPU detection labels a node 'Intel-' + habana_frameworks.torch.hpu.get_device_name(), i.e. "
    "'Intel-GAUDI3' on Gaudi 3; ray.util.accelerators.INTEL_GAUDI ('Intel-GAUDI') names first-generation Gaudi"
)
_WHITE_PAPER = "Intel Gaudi 3 AI accelerator white paper / Hot Chips 2024 spec table"


def _accelerator(**fields) -> DeviceProfile:
    return DeviceProfile(
        vendor="intel",
        kind="accelerator",
        backend=BACKEND,
        ray_accelerator_type="Intel-GAUDI3",
        arch="gaudi3",
        **fields,
    )


GAUDI3_OAM = _accelerator(
    name="gaudi3-oam",
    display_name="Intel Gaudi 3 OAM (HL-325L, air-cooled)",
    peak_tflops={"bf16": 1835.0, "fp8": 1835.0},
    memory_gb=128.0,
    memory_bandwidth_gbs=3670.0,
    tdp_w=900.0,
    scale_up=Link("Gaudi 3 integrated RoCE, 21 × 200 GbE in-node (all-to-all)", 525.0),
    scale_out=Link("Gaudi 3 integrated RoCE, 3 × 200 GbE scale-out", 75.0),
    sources={
        "peak_tflops": f"{_WHITE_PAPER}: BF16 matrix 1,835 TFLOPS, FP8 matrix 1,835 TFLOPS (dense)",
        "memory_gb": f"{_WHITE_PAPER}: 128 GB HBM2e",
        "memory_bandwidth_gbs": f"{_WHITE_PAPER}: 3.67 TB/s",
        "tdp_w": f"{_WHITE_PAPER}: OAM 900 W air-cooled (1,200 W liquid-cooled)",
        "scale_up": f"{_WHITE_PAPER}: 24 × 200 GbE RoCE ports on die; on the 8-OAM baseboard 21 join the peers "
        "(3 to each of 7): 21 × 25 GB/s = 525 GB/s per direction",
        "scale_out": f"{_WHITE_PAPER}: the other 3 of the 24 ports leave the node: 3 × 25 GB/s = 75 GB/s per direction",
        "ray_accelerator_type": _RAY,
    },
    notes="Only BF16 and FP8 run on the MMEs at the listed rate; the vector engines (TPC) give 28.7 BF16 TFLOPS. "
    "A transfer between two OAMs gets 3 ports (75 GB/s per direction).",
)

GAUDI3_PCIE = _accelerator(
    name="gaudi3-pcie",
    display_name="Intel Gaudi 3 PCIe card (HL-338)",
    peak_tflops={"bf16": 1678.0, "fp8": 1678.0},
    memory_gb=128.0,
    memory_bandwidth_gbs=3700.0,
    tdp_w=600.0,
    scale_up=Link("PCIe 5.0 x16", 64.0),
    scale_out=Link("400 Gb/s Ethernet (RoCE)", 50.0),
    sources={
        "peak_tflops": "Intel Gaudi 3 PCIe add-in card (HL-338) product brief: 1,678 BF16/FP8 TFLOPS (dense); "
        "the Gaudi 3 figure of Asgar et al. 2025's hardware table",
        "memory_gb": "Intel Gaudi 3 HL-338 product brief: 128 GB HBM2e",
        "memory_bandwidth_gbs": "Intel Gaudi 3 HL-338 product brief: 3.7 TB/s",
        "tdp_w": "Intel Gaudi 3 HL-338 product brief: 600 W TDP",
        "scale_up": f"{_WHITE_PAPER}: host interface PCIe Gen5 x16, 128 GB/s bidirectional -> 64 GB/s per direction",
        "scale_out": "typical deployment assumption: 400 Gb/s of RoCE per card = 50 GB/s per direction",
        "ray_accelerator_type": _RAY,
    },
    notes="Cards can also be joined over their integrated RoCE ports (a top board links groups of 4); that path "
    "is not modelled here, so in-node peers are costed over PCIe, a conservative bound.",
)

PROFILES = (GAUDI3_OAM, GAUDI3_PCIE)
