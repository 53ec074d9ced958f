"""hetagent backend `gaudi`: Intel Gaudi 3 profiles and detection.

Only hook implementations live here. hl-smi and habana_frameworks are used inside `detect.detect()`, never at
import time, so listing this backend costs nothing on a machine without the Gaudi stack.
"""

from __future__ import annotations

from hetagent.hardware.device import DeviceProfile
from hetagent.plugins import BackendInfo, Detection, LoweringPipeline, hookimpl

from hetagent_gaudi import detect, lowering, profiles

__version__ = "0.1.0"


@hookimpl
def hetagent_backend_info() -> BackendInfo:
    return BackendInfo(
        name="gaudi",
        version=__version__,
        plugin_api="1.1",  # the API this backend is written against (a literal, so a mismatch shows)
        vendor="intel",
        summary="Intel Gaudi 3 accelerators (OAM and PCIe) through hl-smi",
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
