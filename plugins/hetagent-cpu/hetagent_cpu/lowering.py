"""CPU lowering: IREE `llvm-cpu`, one pipeline per CPU profile, targeting that CPU's instruction set.

Artifacts are IREE VM modules (`.vmfb`) that run on IREE's `local-task` (multi-threaded) or `local-sync`
(caller's thread) driver. The target CPU is the profile's LLVM CPU name: for `host-cpu`, the x86-64 psABI level
(or AArch64 baseline) read from /proc/cpuinfo — a portable name rather than "host", so an artifact's cache key
says exactly what it was built for.
"""

from __future__ import annotations

from hetagent.backend import LoweringPipeline, Stage

from hetagent_cpu import detect, profiles

BACKEND = "cpu"
# torch dialect (from torch.export) -> linalg on tensors, IREE's input form; already-linalg kernels pass through.
TORCH_TO_LINALG = Stage("torch-to-linalg", "mlir", "builtin.module(torch-to-iree)")
# The stack limit: a row reduction over a width that is no power of two (BERT's LayerNorm over 384, fused with the
# embedding gather) keeps a 24-row tile on the stack, 37 KB against IREE's 32 KiB default; the task system's
# workers have room for 64 KiB.
COMPILE = Stage(
    "iree-llvm-cpu",
    "iree",
    "--iree-hal-target-device=local --iree-hal-local-target-device-backends=llvm-cpu "
    "--iree-llvmcpu-target-cpu={target_cpu} --iree-opt-level=O3 --iree-llvmcpu-stack-allocation-limit=65536",
)


def pipeline(device: str, target_cpu: str) -> LoweringPipeline:
    return LoweringPipeline(
        backend=BACKEND,
        device_kind=device,
        stages=(TORCH_TO_LINALG, COMPILE),
        target_options={"target_cpu": target_cpu},
    )


def pipelines() -> list[LoweringPipeline]:
    return [pipeline(detect.PROFILE, detect.cpu_info().arch)] + [pipeline(p.name, p.arch) for p in profiles.REFERENCE_PROFILES]
