"""Decode kernel throughput, batch 16 vs batch 1, measured on the compiled kernels themselves (issue 17 item 3):

    .venv/bin/python benchmarks/bench_decode_kernels.py [--model tiny-llama] [--capacity 192] [--steps 200]

The cpu backend's decode kernels at batch 1 and batch 16 (the host-cpu pipeline, exactly as `hetagent compile`
builds them, through the compile cache), called with resident weights in alternating rounds so both see the same
machine. Two clocks: the calling thread's CPU time on IREE's `local-sync` driver (the kernel's own work, which
other processes on a shared machine barely move) and wall time on `local-task` with as many threads as this
process may use (what the runtime's worker sees; other processes inflate it). Prints the step time of each and
batch16/batch1 = 16 · t(batch 1) / t(batch 16), the throughput ratio bench_runtime.py also reports through the
whole runtime (target ≥ 4×).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "core"))

BATCHES = (1, 16)


def build(model: str, batch: int, capacity: int) -> tuple[bytes, str]:
    """The host-cpu decode kernel's artifact (from the compile cache when built before) and its symbol."""
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
    pipeline = lowering.pipeline(detect.PROFILE, detect.cpu_info().arch)
    source = clean_module_text(module, fn.symbol)
    key = artifact_key(source, pipeline)
    artifact = cache.get("artifacts", key, pipeline.artifact)
    if artifact is None:
        artifact = run_pipeline(pipeline, parse(source, context=new_context()), fn.symbol)
        cache.put("artifacts", key, pipeline.artifact, artifact)
    return artifact, fn.symbol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--capacity", type=int, default=192, help="KV capacity (bench_runtime's decode: 64 + 128)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per kernel and driver")
    args = parser.parse_args()

    import iree.runtime as rt

    from hetagent.models import card, reference

    cores = len(os.sched_getaffinity(0))
    rt.flags.parse_flags(f"--task_topology_group_count={cores}")
    model = card(args.model)
    host_weights = [w.numpy() for w in reference.random_weights(model).values()]
    artifacts = {b: build(args.model, b, args.capacity) for b in BATCHES}
    clocks = {"local-sync": time.thread_time, "local-task": time.perf_counter}
    kernels = {}
    for driver in clocks:
        config = rt.Config(driver)
        weights = [rt.asdevicearray(config.device, w) for w in host_weights]
        for batch, (artifact, symbol) in artifacts.items():
            module = rt.VmModule.copy_buffer(config.vm_instance, artifact)
            function = rt.SystemContext(vm_modules=[module], config=config).modules.module[symbol]
            kv = np.zeros((model.num_layers, 2, batch, model.num_kv_heads, args.capacity, model.head_size), np.float32)
            token, positions = np.full(batch, 5, np.int64), np.full(batch, args.capacity // 2, np.int64)
            kernels[driver, batch] = (function, (token, positions, rt.asdevicearray(config.device, kv), *weights))
    times = {key: [] for key in kernels}
    rounds = 10
    for _ in range(rounds):  # alternate so that both batches see the same machine
        for (driver, batch), (function, call_args) in kernels.items():
            clock = clocks[driver]
            for _ in range(3):
                function(*call_args)
            for _ in range(max(1, args.steps // rounds)):
                start = clock()
                logits, _kv = function(*call_args)
                logits.to_host()
                times[driver, batch].append(clock() - start)
    figures = {"model": args.model, "capacity": args.capacity, "cores": cores, "load_average": os.getloadavg()[0]}
    for driver in clocks:
        step = {b: statistics.median(times[driver, b]) for b in BATCHES}
        best = {b: min(times[driver, b]) for b in BATCHES}
        figures[driver] = {"step_ms_p50": {b: s * 1e3 for b, s in step.items()},
                           "step_ms_min": {b: s * 1e3 for b, s in best.items()},
                           "batch16_over_batch1": 16 * step[1] / step[16],
                           "batch16_over_batch1_min": 16 * best[1] / best[16]}
    print(json.dumps(figures, indent=2))
    for driver, what in (("local-sync", "thread CPU time, 1 thread"), ("local-task", f"wall time, {cores} threads")):
        f = figures[driver]
        print(f"{args.model} decode ({what}): batch 1 {f['step_ms_p50'][1]:.3f} ms, batch 16 {f['step_ms_p50'][16]:.3f} ms "
              f"per step (p50) -> batch16/batch1 {f['batch16_over_batch1']:.2f}x (from minima {f['batch16_over_batch1_min']:.2f}x)"
              "   (target >= 4x)")
    if figures["load_average"] > 0.5 * cores:
        print(f"warning: load average {figures['load_average']:.1f} on {cores} cores: wall times are not representative")


if __name__ == "__main__":
    main()
