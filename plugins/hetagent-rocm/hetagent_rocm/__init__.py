"""hetagent backend `rocm`: AMD Instinct GPU profiles and detection.

Only hook implementations live here. amd-smi / rocm-smi run inside `detect.detect()`, never at import time,
so listing this backend costs nothing on a machine without ROCm.
"""

from __future__ import annotations

from hetagent.hardware.device import DeviceProfile
from hetagent.plugins import BackendInfo, Detection, LoweringPipeline, hookimpl

from hetagent_rocm import detect, lowering, profiles

__version__ = "0.1.0"


@hookimpl
def hetagent_backend_info() -> BackendInfo:
    return BackendInfo(
        name="rocm",
        version=__version__,
        plugin_api="1.1",  # the API this backend is written against (a literal, so a mismatch shows)
        vendor="amd",
        summary="AMD Instinct GPUs (MI300X, MI325X) through amd-smi, rocm-smi or the KFD sysfs",
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
