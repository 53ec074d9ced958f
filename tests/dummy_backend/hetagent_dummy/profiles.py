"""Device profiles of the dummy backend: every number has a source, throughput is dense."""

from hetagent.hardware.device import DeviceProfile, Link

_SPEC = "dummy-npu datasheet rev. 0 (invented for tests)"

PROFILES = (
    DeviceProfile(
        name="dummy-npu",
        display_name="Dummy NPU",
        vendor="dummy",
        kind="accelerator",
        backend="dummy",
        peak_tflops={"bf16": 100.0, "fp8": 200.0, "fp32": 25.0},
        memory_gb=32.0,
        memory_bandwidth_gbs=1000.0,
        tdp_w=300.0,
        scale_up=Link("dummy-link", 100.0),
        sources={
            "peak_tflops": _SPEC,
            "memory_gb": _SPEC,
            "memory_bandwidth_gbs": _SPEC,
            "tdp_w": _SPEC,
            "scale_up": _SPEC,
        },
        arch="dnpu1",
    ),
)
