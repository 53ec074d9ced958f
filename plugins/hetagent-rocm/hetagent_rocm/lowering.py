"""ROCm lowering: IREE's `rocm` (HIP) target, one pipeline per AMD profile, cross-compiled without a GPU.

Artifacts are IREE VM modules (`.vmfb`) holding code objects for the profile's architecture (gfx942 for
MI300X and MI325X), run with IREE's `hip` driver. The `target` option overrides the architecture
(`hetagent compile --target-option rocm.target=gfx950`).
"""

from __future__ import annotations

from hetagent.backend import LoweringPipeline, Stage

from hetagent_rocm import profiles

BACKEND = "rocm"
TORCH_TO_LINALG = Stage("torch-to-linalg", "mlir", "builtin.module(torch-to-iree)")
COMPILE = Stage(
    "iree-rocm",
    "iree",
    "--iree-hal-target-device=hip --iree-rocm-target={target} --iree-opt-level=O3",
)


def pipelines() -> list[LoweringPipeline]:
    return [
        LoweringPipeline(
            backend=BACKEND,
            device_kind=profile.name,
            stages=(TORCH_TO_LINALG, COMPILE),
            target_options={"target": profile.arch},
        )
        for profile in profiles.PROFILES
    ]
