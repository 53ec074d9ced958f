"""The four backends' detection: cheap imports, the host CPU, unavailable vendors, and the pure parsers/matchers
on realistic tool output. No GPU, driver or vendor SDK is needed: vendor paths are exercised with fakes."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
import types

import hetagent_cpu
import hetagent_cuda
import hetagent_gaudi
import hetagent_rocm
import pytest
from hetagent.backend import Detection
from hetagent_cpu import detect as cpu_detect
from hetagent_cuda import detect as cuda_detect
from hetagent_gaudi import detect as gaudi_detect
from hetagent_rocm import detect as rocm_detect

VENDOR_BACKENDS = {"cuda": hetagent_cuda.CudaBackend(), "rocm": hetagent_rocm.RocmBackend(),
                   "gaudi": hetagent_gaudi.GaudiBackend()}
GB = 10**9
MIB = 1 << 20


def test_importing_the_plugins_is_cheap_and_loads_no_sdk():
    code = (
        "import sys, time; t = time.perf_counter(); "
        "import hetagent_cpu, hetagent_cuda, hetagent_rocm, hetagent_gaudi; dt = time.perf_counter() - t; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'cuda', 'habana_frameworks', 'amdsmi', 'pynvml', 'numpy')); print(dt); print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[1] == "[]", f"importing the plugins pulled in {out[1]}"
    assert float(out[0]) < 0.5


# ---------------------------------------------------------------- cpu


def test_cpu_detects_the_host_and_measures_it():
    detection = hetagent_cpu.CpuBackend().hetagent_detect()
    detection.validate()
    assert detection.available and len(detection.devices) == 1
    device = detection.devices[0]
    assert (device.profile, device.index) == ("host-cpu", 0) and device.name
    assert device.memory_gb > 0
    assert int(device.details["cores"]) > 0 and float(device.details["bandwidth_gbs"]) > 0
    assert cpu_detect.host_cpu() is cpu_detect.host_cpu()  # measured once per process

    host = next(p for p in hetagent_cpu.CpuBackend().hetagent_device_profiles() if p.name == "host-cpu")
    host.validate()
    assert host.peak_tflops["fp32"] > 0 and host.memory_bandwidth_gbs > 0 and host.memory_gb > 0
    assert host.cores == int(device.details["cores"]) and host.tdp_w == 10 * host.cores
    assert host.vendor and host.arch
    for path in ("peak_tflops.fp32", "memory_gb", "memory_bandwidth_gbs"):
        assert host.sources[path].startswith("measured on this host")
    assert "estimate" in host.sources["tdp_w"]


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_1 sse4_2 ssse3 cx16 popcnt avx2 bmi1 bmi2 fma f16c movbe xsave avx512f avx512bw avx512cd avx512dq avx512vl avx512_bf16 amx_tile amx_bf16 amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve sve2 bf16 i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd4f
"""


def test_parse_cpuinfo():
    x86 = cpu_detect.parse_cpuinfo(X86_CPUINFO)
    assert (x86.model, x86.vendor, x86.arch) == ("Intel(R) Xeon(R) Platinum 8480+", "intel", "x86-64-v4")
    assert x86.features == ("fma", "f16c", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    arm = cpu_detect.parse_cpuinfo(ARM_CPUINFO)
    assert (arm.vendor, arm.arch, arm.features) == ("arm", "generic", ("neon", "sve", "sve2", "bf16", "i8mm"))
    amd = cpu_detect.parse_cpuinfo("vendor_id : AuthenticAMD\nmodel name : AMD EPYC 9654\nflags : avx2 fma\n")
    assert (amd.vendor, amd.model, amd.arch) == ("amd", "AMD EPYC 9654", "x86-64")


def test_parse_meminfo():
    assert cpu_detect.parse_meminfo("MemTotal:       24684096 kB\nMemFree: 1 kB\n") == 24684096 * 1024 / 1e9
    with pytest.raises(ValueError):
        cpu_detect.parse_meminfo("")


# ---------------------------------------------------------------- vendors on this machine


@pytest.mark.parametrize("backend", VENDOR_BACKENDS)
def test_vendor_detection_never_raises_and_validates(backend):
    detection = VENDOR_BACKENDS[backend].hetagent_detect()
    assert isinstance(detection, Detection) and detection.backend == backend
    detection.validate()
    if not detection.available:
        assert detection.reason and detection.hint


def test_cuda_without_cuda_python(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)  # makes `import cuda...` raise ImportError
    d = cuda_detect.detect()
    assert (d.available, d.reason, d.hint) == (
        False,
        "cuda-python is not installed",
        "pip install 'hetagent-cuda[driver]'",
    )


def test_rocm_without_driver_or_tools(monkeypatch, tmp_path):
    monkeypatch.setattr(rocm_detect.shutil, "which", lambda name: None)
    monkeypatch.setattr(rocm_detect, "KFD_NODES", tmp_path / "absent")
    d = rocm_detect.detect()
    assert not d.available
    assert d.reason == "no ROCm driver or tools found (no /dev/kfd, no amd-smi/rocm-smi)"
    assert d.hint == "install ROCm (amdgpu driver + amd-smi)"


def test_gaudi_without_driver_or_tools(monkeypatch):
    monkeypatch.setattr(gaudi_detect.shutil, "which", lambda name: None)
    monkeypatch.setattr(gaudi_detect.importlib.util, "find_spec", lambda name: None)
    d = gaudi_detect.detect()
    assert (d.available, d.reason) == (False, "no Gaudi driver or hl-smi found")
    assert "habanalabs driver" in d.hint


# ---------------------------------------------------------------- cuda with a fake driver module


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_NO_DEVICE = 100


def fake_driver(devices, init=CUresult.CUDA_SUCCESS):
    """A stand-in for cuda.bindings.driver: same call shapes, (CUresult, value) tuples."""
    attr = types.SimpleNamespace(
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76
    )
    ok = CUresult.CUDA_SUCCESS
    return types.SimpleNamespace(
        CUresult=CUresult,
        CUdevice_attribute=attr,
        cuInit=lambda flags: (init,),
        cuDeviceGetCount=lambda: (ok, len(devices)),
        cuDeviceGet=lambda i: (ok, i),
        cuDeviceGetName=lambda size, dev: (ok, devices[dev][0].encode().ljust(size, b"\x00")),
        cuDeviceTotalMem=lambda dev: (ok, devices[dev][1]),
        cuDeviceGetAttribute=lambda a, dev: (ok, devices[dev][2][0 if a == 75 else 1]),
        cuDeviceGetUuid=lambda dev: (ok, types.SimpleNamespace(bytes=bytes([dev] * 16))),
    )


def test_cuda_driver_init_failure(monkeypatch):
    monkeypatch.setattr(cuda_detect, "_driver", lambda: fake_driver([], init=CUresult.CUDA_ERROR_NO_DEVICE))
    d = cuda_detect.detect()
    assert not d.available and "CUDA_ERROR_NO_DEVICE" in d.reason
    assert d.hint == "install the NVIDIA driver (libcuda.so.1)"


def test_cuda_enumerates_and_matches(monkeypatch):
    devices = [("NVIDIA H100 80GB HBM3", 81559 * MIB, (9, 0))] * 2 + [("NVIDIA H100 PCIe", 81559 * MIB, (9, 0))]
    monkeypatch.setattr(cuda_detect, "_driver", lambda: fake_driver(devices))
    d = cuda_detect.detect()
    d.validate()
    assert d.available and [x.profile for x in d.devices] == ["h100-sxm", "h100-sxm"]
    assert d.devices[1].index == 1
    assert d.devices[0].details == {"compute_capability": "9.0", "uuid": "GPU-00000000-0000-0000-0000-000000000000"}
    assert d.devices[1].details["uuid"] == "GPU-01010101-0101-0101-0101-010101010101"  # how its worker finds it
    assert d.devices[0].name == "NVIDIA H100 80GB HBM3" and d.devices[0].memory_gb == 85.5
    assert "#2 NVIDIA H100 PCIe" in d.hint  # left out, and said so


def test_cuda_only_unknown_devices_is_unavailable(monkeypatch):
    monkeypatch.setattr(cuda_detect, "_driver", lambda: fake_driver([("NVIDIA GeForce RTX 4090", 24 * GB, (8, 9))]))
    d = cuda_detect.detect()
    assert not d.available and "NVIDIA GeForce RTX 4090" in d.reason and d.hint


@pytest.mark.parametrize(
    "name, memory, profile",
    [
        ("NVIDIA H100 80GB HBM3", 81559 * MIB, "h100-sxm"),
        ("NVIDIA A100-SXM4-80GB", 81920 * MIB, "a100-80gb-sxm"),
        ("NVIDIA H200", 143771 * MIB, "h200-sxm"),
        ("NVIDIA B200", 183359 * MIB, "b200"),
        ("NVIDIA L40S", 46068 * MIB, "l40s"),
        ("NVIDIA L4", 23034 * MIB, "l4"),
        ("NVIDIA A40", 46068 * MIB, "a40"),
        ("NVIDIA H100 PCIe", 81559 * MIB, None),
        ("NVIDIA H100 NVL", 95830 * MIB, None),
        ("NVIDIA H200 NVL", 143771 * MIB, None),
        ("NVIDIA A100-SXM4-40GB", 40960 * MIB, None),
        ("NVIDIA A100 80GB PCIe", 81920 * MIB, None),
        ("NVIDIA GB200", 189471 * MIB, None),
        ("NVIDIA L40", 46068 * MIB, None),
        ("NVIDIA RTX A4000", 16376 * MIB, None),
    ],
)
def test_match_nvidia(name, memory, profile):
    assert cuda_detect.match_nvidia(name, memory) == profile


# ---------------------------------------------------------------- rocm

AMD_SMI_NEW = json.dumps(
    {
        "gpu_data": [
            {
                "gpu": i,
                "asic": {
                    "market_name": "AMD Instinct MI300X",
                    "vendor_id": "0x1002",
                    "device_id": "0x74a1",
                    "target_graphics_version": "gfx942",
                    "num_compute_units": 304,
                },
                "vram": {"type": "HBM3", "size": {"value": 196592, "unit": "MB"}},
            }
            for i in range(2)
        ]
    }
)
AMD_SMI_OLD = json.dumps(
    [
        {
            "gpu": 0,
            "asic": {"market_name": "N/A", "device_id": "0x74a5", "target_graphics_version": "gfx942"},
            "vram": {"size": "262128 MB"},
        },
        {
            "gpu": 1,
            "asic": {"market_name": "AMD Instinct MI300A", "device_id": "0x74a0", "target_graphics_version": "gfx942"},
            "vram": {"size": "131072 MB"},
        },
    ]
)
ROCM_SMI = json.dumps(
    {
        "card0": {
            "Card Series": "AMD INSTINCT MI300 (MCM) OAM AC MBA",
            "Card Model": "0x74a1",
            "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
            "Card SKU": "M3000100",
            "GFX Version": "gfx942",
            "VRAM Total Memory (B)": "206141652992",
            "VRAM Total Used Memory (B)": "301989888",
        },
        "system": {"Driver version": "6.10.5"},
    }
)


def test_parse_amd_smi():
    found = rocm_detect.parse_amd_smi(AMD_SMI_NEW)
    assert found[1] == {
        "index": 1,
        "name": "AMD Instinct MI300X",
        "gfx": "gfx942",
        "device_id": 0x74A1,
        "memory": 196592 * MIB,
    }
    old = rocm_detect.parse_amd_smi(AMD_SMI_OLD)
    assert [(d["device_id"], d["memory"]) for d in old] == [(0x74A5, 262128 * MIB), (0x74A0, 131072 * MIB)]


def test_parse_rocm_smi():
    (card,) = rocm_detect.parse_rocm_smi(ROCM_SMI)
    assert card == {
        "index": 0,
        "name": "AMD INSTINCT MI300 (MCM) OAM AC MBA",
        "gfx": "gfx942",
        "device_id": 0x74A1,
        "memory": 206141652992,
    }


@pytest.mark.parametrize(
    "gfx, memory, name, device_id, profile",
    [
        ("gfx942", 196592 * MIB, "AMD Instinct MI300X", 0x74A1, "mi300x"),
        ("gfx942", 262128 * MIB, "N/A", 0x74A5, "mi325x"),
        ("gfx942", 206141652992, "AMD INSTINCT MI300 (MCM) OAM AC MBA", None, "mi300x"),  # memory decides
        ("gfx942", 262128 * MIB, "", None, "mi325x"),
        ("gfx942", 131072 * MIB, "AMD Instinct MI300A", 0x74A0, None),
        ("gfx942", 196592 * MIB, "AMD Instinct MI308X", 0x74A2, None),
        ("gfx942", 24576 * MIB, "AMD Instinct MI300X", 0x74A1, None),  # a partitioned slice: not the profile
        ("gfx90a", 65536 * MIB, "AMD Instinct MI250X", 0x740C, None),
    ],
)
def test_match_amd(gfx, memory, name, device_id, profile):
    assert rocm_detect.match_amd(gfx, memory, name, device_id) == profile


def test_gfx_name():
    assert [rocm_detect.gfx_name(v) for v in (90402, 90010, 110000, 90500)] == ["gfx942", "gfx90a", "gfx1100", "gfx950"]


def test_rocm_with_amd_smi(monkeypatch):
    monkeypatch.setattr(
        rocm_detect.shutil, "which", lambda name: "/opt/rocm/bin/amd-smi" if name == "amd-smi" else None
    )
    monkeypatch.setattr(rocm_detect, "_run", lambda argv: AMD_SMI_NEW)
    d = rocm_detect.detect()
    d.validate()
    assert d.available and [x.profile for x in d.devices] == ["mi300x", "mi300x"]
    assert d.devices[0].details == {"gfx": "gfx942", "source": "amd-smi", "pci_device_id": "0x74a1"}


def test_rocm_tool_failure_is_unavailable(monkeypatch):
    def fail(argv):
        raise subprocess.CalledProcessError(1, argv, output="", stderr="AMDSMI_STATUS_DRM_ERROR: driver not loaded\n")

    monkeypatch.setattr(rocm_detect.shutil, "which", lambda name: "/usr/bin/amd-smi" if name == "amd-smi" else None)
    monkeypatch.setattr(rocm_detect, "_run", fail)
    d = rocm_detect.detect()
    assert not d.available and d.reason == "amd-smi exited with status 1: AMDSMI_STATUS_DRM_ERROR: driver not loaded"

    def hang(argv):
        raise subprocess.TimeoutExpired(argv, 5)

    monkeypatch.setattr(rocm_detect, "_run", hang)
    assert "timed out" in rocm_detect.detect().reason


def test_rocm_from_kfd_sysfs(monkeypatch, tmp_path):
    cpu, gpu = tmp_path / "0", tmp_path / "1"
    (cpu / "mem_banks" / "0").mkdir(parents=True)
    (cpu / "properties").write_text("cpu_cores_count 96\nsimd_count 0\ngfx_target_version 0\n")
    (gpu / "mem_banks" / "0").mkdir(parents=True)
    (gpu / "properties").write_text("cpu_cores_count 0\nsimd_count 1216\ngfx_target_version 90402\ndevice_id 29857\n")
    (gpu / "mem_banks" / "0" / "properties").write_text(f"heap_type 1\nsize_in_bytes {196592 * MIB}\nwidth 8192\n")
    monkeypatch.setattr(rocm_detect.shutil, "which", lambda name: None)
    monkeypatch.setattr(rocm_detect, "KFD_NODES", tmp_path)
    d = rocm_detect.detect()
    assert d.available and d.devices[0].profile == "mi300x" and d.devices[0].details["source"] == "KFD sysfs"


# ---------------------------------------------------------------- gaudi

HL_SMI = "0, HL-325L, 131072 MiB\n1, HL-325L, 131072 MiB\n2, HL-225, 98304 MiB\n"


def test_parse_hl_smi_and_match():
    found = gaudi_detect.parse_hl_smi(HL_SMI + "\nsome warning line\n")
    assert found[0] == {"index": 0, "name": "HL-325L", "memory": 131072 * MIB} and len(found) == 3
    assert [gaudi_detect.match_gaudi(n) for n in ("HL-325L", "HL-338", "HL-225", "HL-335", "GAUDI3")] == [
        "gaudi3-oam",
        "gaudi3-pcie",
        None,
        None,
        None,
    ]


def test_gaudi_with_hl_smi(monkeypatch):
    monkeypatch.setattr(gaudi_detect.shutil, "which", lambda name: "/usr/bin/hl-smi")
    monkeypatch.setattr(
        gaudi_detect.subprocess,
        "run",
        lambda argv, **kw: subprocess.CompletedProcess(argv, 0, stdout=HL_SMI, stderr=""),
    )
    d = gaudi_detect.detect()
    d.validate()
    assert d.available and [x.profile for x in d.devices] == ["gaudi3-oam", "gaudi3-oam"]
    assert d.devices[0].memory_gb == 137.4 and "#2 HL-225" in d.hint


def test_gaudi_hl_smi_failure_is_unavailable(monkeypatch):
    def hang(argv, **kw):
        raise subprocess.TimeoutExpired(argv, 5)

    monkeypatch.setattr(gaudi_detect.shutil, "which", lambda name: "/usr/bin/hl-smi")
    monkeypatch.setattr(gaudi_detect.subprocess, "run", hang)
    d = gaudi_detect.detect()
    assert not d.available and "TimeoutExpired" in d.reason and d.hint
