"""The dummy backend: the hookimpls. It mirrors the layout every backend package has (`spec/plugin-api.md`):
profiles in profiles.py, detection in detect.py, lowering pipelines and executors here (a real backend keeps
them in lowering.py and executors.py). Nothing here imports anything heavier than hetagent itself."""

from __future__ import annotations

from hetagent.plugins import (
    BackendInfo,
    Detection,
    ExecutorSpec,
    LoweringPipeline,
    Stage,
    hookimpl,
)

from hetagent_dummy.detect import detect
from hetagent_dummy.profiles import PROFILES

NAME = "dummy"
__version__ = "0.0.1"
# The plugin-API version this backend was written against: a literal, never hetagent's PLUGIN_API_VERSION
# (that would always equal the running core's and defeat the version check).
PLUGIN_API = "1.0"


@hookimpl
def hetagent_backend_info() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        version=__version__,
        plugin_api=PLUGIN_API,
        vendor="dummy",
        summary="test backend with one fake NPU",
    )


@hookimpl
def hetagent_device_profiles():
    return list(PROFILES)


@hookimpl
def hetagent_detect() -> Detection:
    return detect()


@hookimpl
def hetagent_lowering_pipelines():
    return [
        LoweringPipeline(
            backend=NAME,
            device_kind="accelerator",
            stages=(
                Stage("canonicalize", "mlir", "builtin.module(canonicalize,cse)"),
                Stage("pack", "python", "hetagent_dummy.lowering:pack"),
            ),
            target_options={"arch": "dnpu1"},
        )
    ]


@hookimpl
def hetagent_executors():
    return [
        ExecutorSpec(
            backend=NAME,
            name="dummy-llm",
            ops=("llm.prefill", "llm.decode"),
            device_kinds=("dummy-npu",),
            factory="hetagent_dummy.executors:DummyExecutor",  # a string: never imported by listing it
        )
    ]
