"""The dummy backend: a `Backend` subclass with every room a backend has (`spec/plugin-api.md`): profiles in
profiles.py, detection in detect.py, lowering pipelines and executors declared here (a real backend keeps them
in lowering.py and executors.py). Nothing here imports anything heavier than hetagent itself."""

from __future__ import annotations

from hetagent.backend import Backend, ExecutorSpec, LoweringPipeline, Stage

from hetagent_dummy.detect import detect
from hetagent_dummy.profiles import PROFILES

__version__ = "0.0.1"


class DummyBackend(Backend):
    name = "dummy"
    vendor = "dummy"
    # The plugin-API version this backend was written against: a literal, never hetagent's PLUGIN_API_VERSION
    # (that would always equal the running core's and defeat the version check).
    plugin_api = "2.0"
    version = __version__
    summary = "test backend with one fake NPU"

    def profiles(self):
        return list(PROFILES)

    def detect(self):
        return detect()

    def pipelines(self):
        return [
            LoweringPipeline(
                backend=self.name,
                device_kind="accelerator",
                stages=(
                    Stage("canonicalize", "mlir", "builtin.module(canonicalize,cse)"),
                    Stage("pack", "python", "hetagent_dummy.lowering:pack"),
                ),
                target_options={"arch": "dnpu1"},
            )
        ]

    def executors(self):
        return [
            ExecutorSpec(
                backend=self.name,
                name="dummy-llm",
                ops=("llm.prefill", "llm.decode"),
                device_kinds=("dummy-npu",),
                factory="hetagent_dummy.executors:DummyExecutor",  # a string: never imported by listing it
            )
        ]
