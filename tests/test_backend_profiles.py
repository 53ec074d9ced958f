"""The four backend packages' device profiles: schema, DESIGN §5 dense figures, sources, names, Ray strings."""

from __future__ import annotations

import math

import hetagent_cpu
import hetagent_cuda
import hetagent_gaudi
import hetagent_rocm
import pytest
from hetagent.hardware import default_pricebook
from hetagent.backend import PLUGIN_API_VERSION, BackendInfo, Registry

BACKENDS = {"cpu": hetagent_cpu.CpuBackend(), "cuda": hetagent_cuda.CudaBackend(), "rocm": hetagent_rocm.RocmBackend(),
            "gaudi": hetagent_gaudi.GaudiBackend()}
PACKAGES = {"cpu": hetagent_cpu, "cuda": hetagent_cuda, "rocm": hetagent_rocm, "gaudi": hetagent_gaudi}
VENDORS = {"cpu": "generic", "cuda": "nvidia", "rocm": "amd", "gaudi": "intel"}
NAMES = {
    "cpu": {"host-cpu", "xeon-6980p", "epyc-9654"},
    "cuda": {"a40", "a100-80gb-sxm", "h100-sxm", "h200-sxm", "b200", "l40s", "l4"},
    "rocm": {"mi300x", "mi325x"},
    "gaudi": {"gaudi3-oam", "gaudi3-pcie"},
}


@pytest.fixture(scope="module")
def profiles():
    return {backend: module.hetagent_device_profiles() for backend, module in BACKENDS.items()}


@pytest.fixture(scope="module")
def by_name(profiles):
    return {p.name: p for ps in profiles.values() for p in ps}


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_info(backend):
    module = BACKENDS[backend]
    info = module.hetagent_backend_info()
    assert isinstance(info, BackendInfo)
    info.validate()
    assert (info.name, info.vendor, info.plugin_api) == (backend, VENDORS[backend], PLUGIN_API_VERSION)
    assert info.version == PACKAGES[backend].__version__ == "0.1.0"


def test_profile_names_are_exactly_the_agreed_ones_and_unique(profiles):
    for backend, ps in profiles.items():
        assert {p.name for p in ps} == NAMES[backend]
    every = [p.name for ps in profiles.values() for p in ps]
    assert len(every) == len(set(every))


def test_every_profile_validates_and_belongs_to_its_backend(profiles):
    for backend, ps in profiles.items():
        for p in ps:
            p.validate()
            assert p.backend == backend
            assert p.ray_resource == p.name
            assert p.kind == {"cpu": "cpu", "gaudi": "accelerator"}.get(backend, "gpu")


def test_every_number_has_a_source(by_name):
    for p in by_name.values():
        paths = [f"peak_tflops.{dtype}" for dtype in p.peak_tflops]
        paths += ["memory_gb", "memory_bandwidth_gbs", "tdp_w"]
        paths += [link for link in ("scale_up", "scale_out") if getattr(p, link) is not None]
        for path in paths:
            assert len(p.source_of(path) or "") > 15, f"{p.name}: {path} has no real source"


# DESIGN §5: dense vendor figures (BF16 / FP8 TFLOPS, TDP W), memory and bandwidth where it gives them.
DESIGN = {
    "a40": dict(bf16=149.7, tdp=300, memory=48, bandwidth=696),
    "a100-80gb-sxm": dict(bf16=312, tdp=400, memory=80, bandwidth=2039),
    "h100-sxm": dict(bf16=989, fp8=1979, tdp=700, memory=80, bandwidth=3350),
    "h200-sxm": dict(bf16=989, fp8=1979, tdp=700, memory=141, bandwidth=4800),
    "b200": dict(bf16=2250, fp8=4500, tdp=1000, memory=192, bandwidth=8000),
    "mi300x": dict(bf16=1307, fp8=2615, tdp=750, memory=192, bandwidth=5300),
    "mi325x": dict(bf16=1307, fp8=2615, tdp=1000, memory=256, bandwidth=6000),
    "gaudi3-oam": dict(bf16=1835, fp8=1835, tdp=900, memory=128, bandwidth=3670),
    "gaudi3-pcie": dict(bf16=1678, fp8=1678, tdp=600, memory=128, bandwidth=3700),
    "l40s": dict(bf16=362, fp8=733, tdp=350, memory=48, bandwidth=864),
    "l4": dict(bf16=121, fp8=242, tdp=72, memory=24, bandwidth=300),
}


@pytest.mark.parametrize("name", DESIGN)
def test_design_figures(by_name, name):
    p, want = by_name[name], DESIGN[name]
    tolerance = 0.5 if p.vendor == "amd" else 0  # AMD prints 1,307.4 / 2,614.9; DESIGN rounds them
    assert math.isclose(p.peak_tflops["bf16"], want["bf16"], abs_tol=tolerance)
    assert p.peak_tflops.get("fp16", p.peak_tflops["bf16"]) == p.peak_tflops["bf16"]
    if "fp8" in want:
        assert math.isclose(p.peak_tflops["fp8"], want["fp8"], abs_tol=tolerance)
    else:
        assert "fp8" not in p.peak_tflops  # Ampere has no FP8
    assert (p.tdp_w, p.memory_gb, p.memory_bandwidth_gbs) == (want["tdp"], want["memory"], want["bandwidth"])


def test_other_datasheet_figures(by_name):
    h100 = by_name["h100-sxm"].peak_tflops
    assert h100 == {"fp64": 67, "fp32": 67, "tf32": 494.5, "bf16": 989, "fp16": 989, "fp8": 1979, "int8": 1979}
    assert by_name["b200"].peak_tflops["fp4"] == 9000
    a100 = by_name["a100-80gb-sxm"].peak_tflops
    assert (a100["tf32"], a100["fp32"]) == (156, 19.5)
    assert by_name["mi300x"].peak_tflops["bf16"] == 1307.4 and by_name["mi300x"].peak_tflops["fp8"] == 2614.9
    assert set(by_name["gaudi3-oam"].peak_tflops) == {"bf16", "fp8"}  # no guessed FP16/FP32 matrix rates


def test_links_are_per_direction(by_name):
    expected = {
        "h100-sxm": 450,
        "h200-sxm": 450,
        "b200": 900,
        "a100-80gb-sxm": 300,
        "a40": 56.25,
        "mi300x": 448,
        "gaudi3-oam": 525,
        "gaudi3-pcie": 64,
        "l40s": 32,
    }
    for name, gbps in expected.items():
        assert by_name[name].scale_up.gbps == gbps, name
        assert "direction" in by_name[name].sources["scale_up"]
    assert by_name["h100-sxm"].scale_out.gbps == 50  # 400 Gb/s NIC
    assert "assumption" in by_name["h100-sxm"].sources["scale_out"]
    assert by_name["gaudi3-oam"].scale_out.gbps == 75  # 3 × 200 GbE


def test_arch_and_ray_strings(by_name):
    arch = {
        "a40": "sm_86",
        "a100-80gb-sxm": "sm_80",
        "h100-sxm": "sm_90",
        "h200-sxm": "sm_90",
        "b200": "sm_100",
        "l40s": "sm_89",
        "l4": "sm_89",
        "mi300x": "gfx942",
        "mi325x": "gfx942",
        "gaudi3-oam": "gaudi3",
        "gaudi3-pcie": "gaudi3",
        "xeon-6980p": "graniterapids",
        "epyc-9654": "znver4",
    }
    assert {name: by_name[name].arch for name in arch} == arch
    ray = {
        "a40": "A40",
        "a100-80gb-sxm": "A100",
        "h100-sxm": "H100",
        "h200-sxm": "H200",
        "b200": "B200",
        "l40s": "L40S",
        "l4": "L4",
        "mi300x": "AMD-Instinct-MI300X-OAM",
        "mi325x": None,
        "gaudi3-oam": "Intel-GAUDI3",
        "gaudi3-pcie": "Intel-GAUDI3",
        "xeon-6980p": None,
        "epyc-9654": None,
    }
    assert {name: by_name[name].ray_accelerator_type for name in ray} == ray


def test_reference_cpu_arithmetic(by_name):
    xeon, epyc = by_name["xeon-6980p"], by_name["epyc-9654"]
    assert xeon.cores == 128 and epyc.cores == 96
    assert math.isclose(xeon.peak_tflops["bf16"], 128 * 2.0e9 * 1024 / 1e12)
    assert math.isclose(xeon.peak_tflops["fp32"], 128 * 2.0e9 * 64 / 1e12)
    assert math.isclose(epyc.peak_tflops["fp32"], 96 * 2.4e9 * 32 / 1e12)
    assert math.isclose(xeon.memory_bandwidth_gbs, 12 * 6400e6 * 8 / 1e9)
    assert math.isclose(epyc.memory_bandwidth_gbs, 12 * 4800e6 * 8 / 1e9)
    assert (xeon.tdp_w, epyc.tdp_w) == (500, 360)
    assert "amx_bf16" in xeon.features and "amx_bf16" not in epyc.features
    assert "128 cores × 2.0 GHz × 1024" in xeon.sources["peak_tflops.bf16"]


def test_every_priced_device_has_a_profile(by_name):
    assert set(default_pricebook().prices) <= set(by_name)


def test_registry_loads_the_four_installed_backends():
    registry = Registry.load(list(BACKENDS))
    assert [b.name for b in registry.active()] == list(BACKENDS)
    assert {p.name for p in registry.device_profiles()} == set().union(*NAMES.values())
    assert {d.backend: d.available for d in registry.detect()}["cpu"] is True
