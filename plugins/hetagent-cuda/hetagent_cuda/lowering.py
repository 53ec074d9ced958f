"""CUDA lowering: IREE's `cuda` target, one pipeline per NVIDIA profile, cross-compiled without a GPU.

Artifacts are IREE VM modules (`.vmfb`) holding PTX, run with IREE's `cuda` driver; the driver JIT-compiles the
PTX for the GPU it finds, so PTX built for an older architecture runs on newer ones. That is how Hopper and
Blackwell are served for now: IREE 3.13 cannot build for sm_90 or sm_100 ("missing GPU target",
iree-org/iree#22147), so their pipelines default to sm_89 PTX. The `target` option overrides the architecture
(`hetagent compile --target-option cuda.target=sm_80`).
"""

from __future__ import annotations

from hetagent.backend import LoweringPipeline, Stage

from hetagent_cuda import profiles

BACKEND = "cuda"
# Architectures IREE 3.13 cannot target -> the newest one it can, whose PTX the driver JITs forward.
IREE_FALLBACK_TARGET = {"sm_90": "sm_89", "sm_100": "sm_89"}
TORCH_TO_LINALG = Stage("torch-to-linalg", "mlir", "builtin.module(torch-to-iree)")
COMPILE = Stage(
    "iree-cuda",
    "iree",
    "--iree-hal-target-device=cuda --iree-cuda-target={target} --iree-opt-level=O3",
)


def target_for(arch: str) -> str:
    return IREE_FALLBACK_TARGET.get(arch, arch)


def pipelines() -> list[LoweringPipeline]:
    return [
        LoweringPipeline(
            backend=BACKEND,
            device_kind=profile.name,
            stages=(TORCH_TO_LINALG, COMPILE),
            target_options={"target": target_for(profile.arch)},
        )
        for profile in profiles.PROFILES
    ]
