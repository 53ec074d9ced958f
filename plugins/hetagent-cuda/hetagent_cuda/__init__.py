"""hetagent backend `cuda`: NVIDIA GPU profiles and detection.

Only hook implementations live here. cuda-python is imported inside `detect.detect()`, never at import time,
so listing this backend costs nothing on a machine without NVIDIA software.
"""

from __future__ import annotations

from hetagent.hardware.device import DeviceProfile
from hetagent.plugins import BackendInfo, Detection, LoweringPipeline, hookimpl

from hetagent_cuda import detect, lowering, profiles

__version__ = "0.1.0"


@hookimpl
def hetagent_backend_info() -> BackendInfo:
    return BackendInfo(
        name="cuda",
        version=__version__,
        plugin_api="1.1",  # the API this backend is written against (a literal, so a mismatch shows)
        vendor="nvidia",
        summary="NVIDIA GPUs (A40, A100, H100, H200, B200, L40S, L4) through the CUDA driver",
    )


@hookimpl
def hetagent_device_profiles() -> list[DeviceProfile]:
    return list(profiles.PROFILES)


@hookimpl
def hetagent_detect() -> Detection:
    return detect.detect()


@hookimpl
def hetagent_lowering_pipelines() -> list[LoweringPipeline]:
    return lowering.pipelines()
