"""hetagent backend `cpu`: the host CPU (detected and measured) and reference server-CPU profiles.

Only hook implementations live here; importing this module loads no numerical library and measures nothing.
"""

from __future__ import annotations

from hetagent.hardware.device import DeviceProfile
from hetagent.plugins import BackendInfo, Detection, ExecutorSpec, LoweringPipeline, hookimpl

from hetagent_cpu import detect, executors, lowering, profiles

__version__ = "0.1.0"


@hookimpl
def hetagent_backend_info() -> BackendInfo:
    return BackendInfo(
        name="cpu",
        version=__version__,
        plugin_api="1.1",  # the API this backend is written against (a literal, so a mismatch shows)
        vendor="generic",
        summary="Reference backend: the host CPU, plus Intel Xeon 6980P and AMD EPYC 9654 for planning",
    )


@hookimpl
def hetagent_device_profiles() -> list[DeviceProfile]:
    return [profiles.host_profile(detect.host_cpu()), *profiles.REFERENCE_PROFILES]


@hookimpl
def hetagent_detect() -> Detection:
    return detect.detect()


@hookimpl
def hetagent_lowering_pipelines() -> list[LoweringPipeline]:
    return lowering.pipelines()


@hookimpl
def hetagent_executors() -> list[ExecutorSpec]:
    return executors.specs()
