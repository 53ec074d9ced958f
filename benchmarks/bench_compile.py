"""Compiler figures: cold compile and cache hit of the default tiny model's functions for cpu, and the compiled
decode step against torch eager.

    .venv/bin/python benchmarks/bench_compile.py [--calls 200]

Cold: a fresh cache, so torch is imported and prefill, decode and embed are exported and compiled (targets:
<= 20 s on the 2-core reference machine). Hit: the same compile again, in process and as a fresh
`hetagent compile` process (target <= 0.5 s in process). Decode: mean time per call of the compiled decode step
on IREE local-task and local-sync (weights resident on the device) and of the torch reference in eager mode.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# The default tiny agent: token counts left to the compiler's defaults (prompt 512, 256 generated tokens).
AGENT = """
"agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %docs = "memory.load"(%q) {store = "notes", embed_model = "tiny-llama", name = "retrieve"} : (!agent.text) -> !agent.docs
  %a = "llm.call"(%q, %docs) {model = "tiny-llama", name = "answer"} : (!agent.text, !agent.docs) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "tiny_default"} : () -> ()
"""


def per_call(function, calls: int) -> float:
    for _ in range(5):
        function()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hetagent-bench-"))
    agent = work / "tiny_default.mlir"
    agent.write_text(AGENT)
    os.environ["HETAGENT_CACHE_DIR"] = str(work / "cache")

    from hetagent.compiler import CompileCache
    from hetagent.compiler.driver import compile_agent
    from hetagent.backend import Registry

    registry = Registry.load(["cpu"])
    registry.lowering_pipelines()
    cache = CompileCache(work / "cache")
    start = time.perf_counter()
    manifest = compile_agent(agent, work / "cold", registry=registry, cache=cache).manifest
    cold = time.perf_counter() - start
    start = time.perf_counter()
    compile_agent(agent, work / "hit", registry=registry, cache=cache)
    hit = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hetagent", "--backends", "cpu", "compile", str(agent), "-o", str(work / "cli"),
                    "--json"], check=True, capture_output=True)
    cli_hit = time.perf_counter() - start

    print(f"kernels: {', '.join(k['symbol'] for k in manifest['kernels'])}")
    print(f"cold compile (torch import, export, 3 kernels for cpu): {cold:6.2f} s   (target <= 20 s)")
    print(f"cache hit, in process:                                  {hit:6.3f} s   (target <= 0.5 s)")
    print(f"cache hit, `hetagent compile` in a fresh process:       {cli_hit:6.3f} s   (Python start and imports included)")

    import torch

    from hetagent.backend.devices import runner_context
    from hetagent.backend.executor import KernelRef
    from hetagent.backend.iree import IreeDevice
    from hetagent.models import card, reference

    decode = next(k for k in manifest["kernels"] if k["function"]["function"] == "decode")
    model = card(decode["function"]["model"])
    weights = reference.random_weights(model)
    _, kv_shape, _ = decode["signature"]["inputs"][2]
    token, position, kv = torch.tensor([7]), torch.tensor([100]), torch.randn(kv_shape)
    with torch.inference_mode():  # first: IREE's task-system threads must not compete with torch's
        rows = [("torch eager", per_call(lambda: reference.decode(model, weights, token, position, kv), args.calls))]
    for driver in ("local-task", "local-sync"):
        # as a worker calls it: weights bound as parameters once, the cache resident (and written in place)
        device = IreeDevice(replace(runner_context("host-cpu"), cores=tuple(sorted(os.sched_getaffinity(0)))), driver)
        function = device.function(KernelRef(decode["symbol"], str(work / "cold" / decode["artifact"]["file"]), {}, ()))
        arguments = [device.upload(x.numpy()) for x in (token, position, kv)]
        arguments += [weights[n].numpy() for n in decode["signature"]["weights"]]
        rows.append((f"IREE {driver}", per_call(lambda: device.to_host(function(*arguments)[0]), args.calls)))
    print(f"decode step of {decode['symbol']} (batch 1, KV capacity {decode['function']['capacity']}), per call:")
    for name, seconds in rows:
        print(f"  {name:<16} {seconds * 1e6:9.0f} µs")


if __name__ == "__main__":
    main()
