"""Decode kernel throughput, batch 16 vs batch 1, measured on the compiled kernels themselves (issue 17 item 3):

    .venv/bin/python benchmarks/bench_decode_kernels.py [--model tiny-llama] [--capacity 192] [--steps 200]
        [--variants arguments,arguments+tiling,parameters,parameters+tiling]

The cpu backend's decode kernels at batch 1 and batch 16, built by the host-cpu pipeline (through the compile cache)
in up to four variants, called with resident weights in alternating rounds so all see the same machine:

- `arguments`: weights are kernel arguments, passed on every call;
- `+tiling`: IREE data tiling as the host-cpu pipeline builds it (`hetagent_cpu.lowering.DATA_TILING`):
  matmuls run as mmt4d on packed operands. With weights as arguments the weights are packed again on every call;
- `parameters`: the function's weights are IREE parameter globals (`hetagent.backend.functions.
  weights_as_parameters`), bound at load from host buffers (`iree.runtime.ParameterIndex`). A computation on a
  global only (the packing; `merge_projections`' concatenation of a layer's q/k/v and gate/up weights, which the
  `parameters` variants include) is hoisted into the module's initializer: it runs once, at load.
  `parameters+tiling` is what the host-cpu pipeline builds (`hetagent_cpu.lowering`);
- `+ukernels`: the mmt4d tiles run by IREE's CPU microkernels (`--iree-llvmcpu-enable-ukernels=all`) instead of
  its generated code: at batch 1 (a tile of one row) the microkernel's software prefetches slow the weight stream;
- `+copy`: without the pipeline's `decode-in-place` and `drop-tensor-aliases` stages: the kernel returns a new KV
  cache, which IREE fills by copying the whole cache every step, rather than writing the step's rows into the one
  it is given.

Two clocks: the calling thread's CPU time on IREE's `local-sync` driver (the kernel's own work, which other
processes on a shared machine barely move) and wall time on `local-task` with as many threads as this process
may use (what the runtime's worker sees; other processes inflate it). Prints each variant's step times and
batch16/batch1 = 16 · t(batch 1) / t(batch 16), the throughput ratio bench_runtime.py also reports through the
whole runtime (target ≥ 4×), and checks every variant's logits against the `arguments` kernel's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from hetagent.hardware.machine_load import load_warning

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "core"))

BATCHES = (1, 16)
VARIANTS = ("arguments", "arguments+tiling", "parameters", "parameters+tiling", "parameters+tiling+copy",
            "parameters+tiling+ukernels")


def variant_pipeline(pipeline, variant: str):
    """The host-cpu pipeline with or without its weights-as-parameters stage (and merge-projections, which needs
    it), its data-tiling flags (or with the microkernels) and its in-place decode."""
    from hetagent_cpu import lowering

    stages = []
    for stage in pipeline.stages:
        if stage in (lowering.WEIGHTS_AS_PARAMETERS, lowering.MERGE_PROJECTIONS) and not variant.startswith("parameters"):
            continue  # merging projections concatenates weights: once at load for parameters, per call for arguments
        if stage in (lowering.DECODE_IN_PLACE, lowering.DROP_TENSOR_ALIASES) and variant.endswith("+copy"):
            continue
        if stage.kind == "iree":
            action = stage.action.replace(" " + lowering.DATA_TILING, "")
            tiling = " " + lowering.DATA_TILING if "+tiling" in variant else ""
            if variant.endswith("+ukernels"):
                tiling = tiling.replace("--iree-llvmcpu-enable-ukernels=none", "--iree-llvmcpu-enable-ukernels=all")
            stage = dataclasses.replace(stage, action=action + tiling)
        stages.append(stage)
    return dataclasses.replace(pipeline, stages=tuple(stages))


def build(model: str, batch: int, capacity: int, variant: str) -> tuple[bytes, str]:
    """The host-cpu decode kernel's artifact in `variant` (from the compile cache when built before), its symbol."""
    from hetagent_cpu import detect, lowering

    from hetagent.backend.functions import ModelFunction
    from hetagent.compiler.cache import CompileCache
    from hetagent.compiler.export import import_function
    from hetagent.compiler.lower import artifact_key, clean_module_text
    from hetagent.compiler.pipelines import run_pipeline
    from hetagent.ir.module import new_context, parse

    fn = ModelFunction(model, "decode", "fp32", batch, capacity=capacity)
    cache = CompileCache()
    context = new_context()
    with context:
        from iree.compiler import ir

        module = ir.Module.create(loc=ir.Location.unknown())
    import_function(fn, module, cache)
    pipeline = variant_pipeline(lowering.pipeline(detect.PROFILE, detect.cpu_info().arch), variant)
    source = clean_module_text(module, fn.symbol)
    key = artifact_key(source, pipeline)
    artifact = cache.get("artifacts", key, pipeline.artifact)
    if artifact is None:
        artifact = run_pipeline(pipeline, parse(source, context=new_context()), fn.symbol)
        cache.put("artifacts", key, pipeline.artifact, artifact)
    return artifact, fn.symbol


def logits_of(results) -> np.ndarray:
    """A decode entry's logits on the host: its first result, or its only one (in place, the cache is an input)."""
    return (results[0] if isinstance(results, (tuple, list)) else results).to_host()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--capacity", type=int, default=192, help="KV capacity (bench_runtime's decode: 64 + 128)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per kernel and driver")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        sys.exit(f"--variants: unknown {', '.join(sorted(unknown))}; valid: {', '.join(VARIANTS)}")

    import iree.runtime as rt

    from hetagent.backend.functions import PARAMETER_SCOPE
    from hetagent.backend.iree import in_place_input
    from hetagent.models import card, reference

    cores = len(os.sched_getaffinity(0))
    rt.flags.parse_flags(f"--task_topology_group_count={cores}")
    model = card(args.model)
    host_weights = {name: w.numpy() for name, w in reference.random_weights(model).items()}
    index = rt.ParameterIndex()
    for i, array in enumerate(host_weights.values()):  # weight i of the signature is parameter "i"
        index.add_buffer(str(i), array)
    artifacts = {(v, b): build(args.model, b, args.capacity, v) for v in variants for b in BATCHES}
    clocks = {"local-sync": time.thread_time, "local-task": time.perf_counter}
    kernels, load_s = {}, {}
    for driver in clocks:
        config = rt.Config(driver)
        weights = [rt.asdevicearray(config.device, w) for w in host_weights.values()]
        for (variant, batch), (artifact, symbol) in artifacts.items():
            modules = [rt.VmModule.copy_buffer(config.vm_instance, artifact)]
            parameters = variant.startswith("parameters")
            if parameters:
                provider = index.create_provider(scope=PARAMETER_SCOPE)
                modules.insert(0, rt.create_io_parameters_module(config.vm_instance, provider))
            start = time.perf_counter()
            function = rt.SystemContext(vm_modules=modules, config=config).modules.module[symbol]
            load_s[driver, variant, batch] = time.perf_counter() - start  # the initializer: packing, if any
            kv = rt.asdevicearray(config.device, np.zeros(
                (model.num_layers, 2, batch, model.num_kv_heads, args.capacity, model.head_size), np.float32))
            token, positions = np.full(batch, 5, np.int64), np.full(batch, args.capacity // 2, np.int64)
            store = () if in_place_input(modules[-1], symbol) is None else (kv,)  # the cache, written in place
            call_args = (token, positions, kv, *store) + (() if parameters else tuple(weights))
            kernels[driver, variant, batch] = (function, call_args)
    errors = {}
    for (driver, variant, batch), (function, call_args) in kernels.items():
        reference_logits = logits_of(kernels[driver, variants[0], batch][0](*kernels[driver, variants[0], batch][1]))
        logits = logits_of(function(*call_args))
        errors[variant] = max(errors.get(variant, 0.0), float(np.abs(logits - reference_logits).max()))
    times = {key: [] for key in kernels}
    rounds = 10
    for _ in range(rounds):  # alternate so that every kernel sees the same machine
        for (driver, variant, batch), (function, call_args) in kernels.items():
            clock = clocks[driver]
            for _ in range(3):
                function(*call_args)
            for _ in range(max(1, args.steps // rounds)):
                start = clock()
                logits_of(function(*call_args))
                times[driver, variant, batch].append(clock() - start)
    figures = {"model": args.model, "capacity": args.capacity, "cores": cores, "load_average": os.getloadavg()[0]}
    for driver in clocks:
        for variant in variants:
            step = {b: statistics.median(times[driver, variant, b]) for b in BATCHES}
            best = {b: min(times[driver, variant, b]) for b in BATCHES}
            figures.setdefault(driver, {})[variant] = {
                "step_ms_p50": {b: s * 1e3 for b, s in step.items()},
                "step_ms_min": {b: s * 1e3 for b, s in best.items()},
                "batch16_over_batch1": 16 * step[1] / step[16],
                "batch16_over_batch1_min": 16 * best[1] / best[16],
                "load_s": {b: load_s[driver, variant, b] for b in BATCHES},
                "max_abs_logit_diff_vs_first": errors[variant]}
    figures["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(figures, indent=2))
    for driver, what in (("local-sync", "thread CPU time, 1 thread"), ("local-task", f"wall time, {cores} threads")):
        print(f"{args.model} decode, capacity {args.capacity} ({what}), p50 per step:")
        base = figures[driver][variants[0]]["step_ms_p50"]
        for variant in variants:
            f = figures[driver][variant]
            print(f"  {variant:18s} batch 1 {f['step_ms_p50'][1]:7.3f} ms ({base[1] / f['step_ms_p50'][1]:.2f}x), "
                  f"batch 16 {f['step_ms_p50'][16]:7.3f} ms ({base[16] / f['step_ms_p50'][16]:.2f}x) -> batch16/batch1 "
                  f"{f['batch16_over_batch1']:.2f}x (from minima {f['batch16_over_batch1_min']:.2f}x)   (target >= 4x)")
    warning = load_warning(figures["load_average"], figures["load_average_end"], "wall times")
    if warning:
        print(f"warning: {warning}")


if __name__ == "__main__":
    main()
