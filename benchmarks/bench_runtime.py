"""Runtime figures (issue 6), printed, not asserted:

    .venv/bin/python benchmarks/bench_runtime.py [--tokens 128]

1. decode tokens/s through the runtime (a LocalEngine worker running the compiled IREE decode, continuous
   batching loop included) vs a plain torch generate loop of the same model (tiny-llama), batch 1, same threads;
   target >= 1.0x.
2. batch-1 decode of small-llama (~620 MB fp32 weights): bytes read per step (weights + KV) / step time, as a
   fraction of this machine's memory bandwidth measured by a streaming read (torch sum over 1 GiB); target >= 60 %.
3. orchestration overhead per op (dispatch to result minus queue and run time), p50; target <= 100 µs.
4. decode throughput at batch 16 (16 requests on a batch-16 kernel: 16 tokens per median step) vs batch 1;
   target >= 4x.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

AGENT = """"agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %a = "llm.call"(%q) {model = "MODEL", input_tokens = 64 : i64, output_tokens = TOKENS : i64, name = "answer"}
      : (!agent.text) -> !agent.text
  %r = "data.transform"(%a) {fn = "pii_redact", name = "redact"} : (!agent.text) -> !agent.text
  "agent.return"(%r) : (!agent.text) -> ()
}) {sym_name = "bench"} : () -> ()
"""


def run(work: Path, model: str, tokens: int, requests: int, batch: int = 1):
    from hetagent.compiler import Plan
    from hetagent.compiler.cache import CompileCache
    from hetagent.plugins import Registry
    from hetagent.runtime.engine import EngineOptions, Request
    from hetagent.runtime.run import new_run_id, prepare, run_prepared

    agent = work / f"{model}-{tokens}.mlir"
    agent.write_text(AGENT.replace("MODEL", model).replace("TOKENS", str(tokens)))
    registry = Registry.load(["cpu"])
    plan = Plan.from_dict({"placements": {"answer.decode": {"device": "host-cpu", "batch": batch}}}, source="bench")
    prepared = prepare(agent, registry=registry, plan=plan, model_overrides={model: model}, cache=CompileCache())
    reqs = [Request(i, {"query": "benchmark " * 5}, 0.0, seed=i) for i in range(requests)]
    options = EngineOptions(run_id=new_run_id(), cache_dir=str(CompileCache().root))
    return run_prepared(prepared, reqs, registry=registry, options=options), prepared


def torch_generate(model_name: str, tokens: int, capacity: int) -> float:
    import torch

    from hetagent.models import card, reference

    model = card(model_name)
    weights = reference.random_weights(model)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    prompt = torch.full((1, 64), 5, dtype=torch.int64)
    with torch.inference_mode():
        logits, kv = reference.prefill(model, weights, prompt, torch.tensor([50]), capacity)
        token, position = logits.argmax(-1), torch.tensor([50])
        for _ in range(5):  # warm up torch's kernels
            reference.decode(model, weights, token, position, kv)
        start = time.perf_counter()
        for _ in range(tokens):
            logits, kv = reference.decode(model, weights, token, position, kv)
            token, position = logits.argmax(-1), position + 1
        return tokens / (time.perf_counter() - start)


def bandwidth_gbs() -> float:
    import torch

    data = torch.ones(256 * 1024 * 1024, dtype=torch.float32)  # 1 GiB
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        data.sum()
        best = max(best, data.numel() * 4 / (time.perf_counter() - start) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hetagent-bench-run-"))
    figures = {}

    single, prepared = run(work, "tiny-llama", args.tokens, 4)
    decode = next(n for n in prepared.program.nodes() if n.op == "llm.decode")
    capacity = decode.kernel.function["capacity"]
    # steady-state decode: generated tokens over the time between them (prefill and queueing excluded)
    runtime_tps = sum(len(r.gaps) for r in single.records) / sum(sum(r.gaps) for r in single.records)
    torch_tps = torch_generate("tiny-llama", args.tokens, capacity)
    figures["decode_tokens_per_s_runtime"] = runtime_tps
    figures["decode_tokens_per_s_torch"] = torch_tps
    figures["decode_speedup_vs_torch"] = runtime_tps / torch_tps
    figures["overhead_us_p50"] = single.summary["overhead_us_p50"]

    batched, _ = run(work, "tiny-llama", args.tokens, 16, batch=16)
    # a step of the batch-16 kernel advances every joined sequence: at full batch, 16 tokens per median step
    gaps16 = sorted(g for r in batched.records for g in r.gaps)
    figures["decode_tokens_per_s_batch16"] = 16 / gaps16[len(gaps16) // 2]
    figures["batch16_over_batch1"] = figures["decode_tokens_per_s_batch16"] / runtime_tps

    big, big_prepared = run(work, "small-llama", 32, 1)
    from hetagent.models import card
    from hetagent.models.weights import weight_shapes

    model = card("small-llama")
    weight_bytes = sum(4 * math.prod(s) for s in weight_shapes(model).values())
    kernel = next(n.kernel for n in big_prepared.program.nodes() if n.op == "llm.decode")
    kv_bytes = 4 * model.num_layers * 2 * model.num_kv_heads * kernel.function["capacity"] * model.head_size
    step = sorted(big.records[0].gaps)[len(big.records[0].gaps) // 2]
    measured = bandwidth_gbs()
    figures["small_llama_weight_mb"] = weight_bytes / 1e6
    figures["small_llama_step_ms_p50"] = step * 1000
    figures["small_llama_gbs"] = (weight_bytes + kv_bytes) / step / 1e9
    figures["measured_bandwidth_gbs"] = measured
    figures["bandwidth_fraction"] = figures["small_llama_gbs"] / measured

    print(json.dumps(figures, indent=2))
    print(f"decode tok/s, runtime vs torch generate (tiny-llama, batch 1): {runtime_tps:.0f} vs {torch_tps:.0f} "
          f"= {runtime_tps / torch_tps:.2f}x   (target >= 1.0x)")
    print(f"small-llama batch-1 decode: {figures['small_llama_gbs']:.1f} GB/s of {measured:.1f} GB/s measured "
          f"= {figures['bandwidth_fraction'] * 100:.0f} %   (target >= 60 %)")
    print(f"orchestration overhead per op, p50: {figures['overhead_us_p50']:.0f} µs   (target <= 100 µs)")
    print(f"decode throughput batch 16 / batch 1: {figures['batch16_over_batch1']:.1f}x   (target >= 4x)")


if __name__ == "__main__":
    main()
