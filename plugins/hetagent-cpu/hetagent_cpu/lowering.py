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
# Weights as IREE parameter globals (bound when the artifact is loaded), so that data tiling packs each weight once,
# in the module's initializer, rather than on every call as it must for a weight passed as an argument.
WEIGHTS_AS_PARAMETERS = Stage("weights-as-parameters", "python", "hetagent.backend.functions:weights_as_parameters")
# One matmul for the projections of one input (q, k, v; gate and up) by the weights' concatenation, computed at load.
MERGE_PROJECTIONS = Stage("merge-projections", "python", "hetagent.backend.functions:merge_projections")
# A decode kernel writes the step's rows into the KV cache it is given instead of returning a copy of all of it.
DECODE_IN_PLACE = Stage("decode-in-place", "python", "hetagent.backend.functions:decode_in_place")
# torch dialect (from torch.export) -> linalg on tensors, IREE's input form; already-linalg kernels pass through.
TORCH_TO_LINALG = Stage("torch-to-linalg", "mlir", "builtin.module(torch-to-iree)")
DROP_TENSOR_ALIASES = Stage("drop-tensor-aliases", "python", "hetagent.backend.functions:drop_tensor_aliases")
# Data tiling: matmuls run as mmt4d on packed operands (benchmarks/bench_decode_kernels.py), lowered by IREE's own
# codegen rather than its mmt4d microkernel. For a decode GEMV (an mmt4d tile of 1 row) the microkernel's software
# prefetches, 512 B ahead of a stream the hardware prefetcher already follows, held one core to 14.6 GB/s where the
# generated loop reads 18.3 (a 32000 x 1024 f32 GEMV; numpy's 1-thread sum: 17.4); small-llama's decode step on 2
# threads 20.8 -> 19.3 ms, and prefill of 512 tokens and a batch-16 step measured the same either way.
DATA_TILING = "--iree-opt-data-tiling --iree-llvmcpu-enable-ukernels=none"
# IREE 3.13's aggressive fusion puts the max over a decode's cache scores (`amax`, lowered as a max with indices)
# into one dispatch with the max against its own key's score, which it then fails to compile ("map_store ...
# restricted to workgroup distributed contexts"). Without it decode steps measured the same (small-llama batch 1,
# 232 dispatches instead of 206).
NO_AGGRESSIVE_FUSION = "--iree-dispatch-creation-enable-aggressive-fusion=false"
# The stack limit: a row reduction over a width that is no power of two (BERT's LayerNorm over 384, fused with the
# embedding gather) keeps a 24-row tile on the stack, 37 KB against IREE's 32 KiB default; the task system's
# workers have room for 64 KiB.
COMPILE = Stage(
    "iree-llvm-cpu",
    "iree",
    "--iree-hal-target-device=local --iree-hal-local-target-device-backends=llvm-cpu "
    "--iree-llvmcpu-target-cpu={target_cpu} --iree-opt-level=O3 --iree-llvmcpu-stack-allocation-limit=65536 "
    + NO_AGGRESSIVE_FUSION + " " + DATA_TILING,
)


def pipeline(device: str, target_cpu: str) -> LoweringPipeline:
    return LoweringPipeline(
        backend=BACKEND,
        device_kind=device,
        stages=(DECODE_IN_PLACE, WEIGHTS_AS_PARAMETERS, MERGE_PROJECTIONS, TORCH_TO_LINALG, DROP_TENSOR_ALIASES, COMPILE),
        target_options={"target_cpu": target_cpu},
    )


def pipelines() -> list[LoweringPipeline]:
    return [pipeline(detect.PROFILE, detect.cpu_info().arch)] + [pipeline(p.name, p.arch) for p in profiles.REFERENCE_PROFILES]
