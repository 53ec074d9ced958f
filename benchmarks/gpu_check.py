"""The GPU node check: one run on a node with an accelerator, one table.

    .venv/bin/python benchmarks/gpu_check.py [--backend cuda|rocm|gaudi] [--tokens 64] [--report DIR]

For the backend whose device detection finds here (or the one named):

1. its conformance tiers a-e (`hetagent conformance B --report`): pass / fail / unsupported / skipped counts;
2. compiled decode tokens/s of small-llama (~620 MB fp32) at batch 1 on one device, through the runtime (the
   backend's executor in a worker pinned to the device), from the median time between tokens;
3. the batch-1 decode bandwidth fraction: bytes a step reads (weights + KV) / median step time, over the device
   profile's memory bandwidth;
4. a cross-device KV transfer: prefill on the device, decode on the host CPU (device -> host staging -> the
   `spec/kv-format.md` layout -> host), tokens compared with an all-host run of the same requests, and the
   transfer's staging times from the run report.

Nothing here is asserted: the figures are printed (and written as JSON with --report) for the issue note. On a
node without the device it says so and exits 0 after tier a-b of the suite.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

AGENT = """"agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %a = "llm.call"(%q) {model = "MODEL", input_tokens = 64 : i64, output_tokens = TOKENS : i64, name = "answer"}
      : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "gpu_check"} : () -> ()
"""
VENDORS = ("cuda", "rocm", "gaudi")


def detected(registry) -> dict[str, str]:
    """backend -> the first device profile it detects here."""
    return {d.backend: d.devices[0].profile for d in registry.detect() if d.available and d.devices}


def conformance(backend: str, out: Path) -> dict:
    report = out / f"conformance-{backend}.json"
    subprocess.run([sys.executable, "-m", "hetagent", "conformance", backend, "--report", str(report)],
                   capture_output=True, text=True, timeout=1800)
    if not report.exists():
        return {"error": "no report written"}
    (section,) = [b for b in json.loads(report.read_text())["backends"] if b["backend"] == backend]
    return section["summary"]


def run(work: Path, registry, plan: dict, *, model: str, tokens: int, requests: int):
    from hetagent.plan import Plan
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.engine import EngineOptions, Request
    from hetagent.runtime.run import new_run_id, prepare, run_prepared

    agent = work / f"{model}-{tokens}.mlir"
    agent.write_text(AGENT.replace("MODEL", model).replace("TOKENS", str(tokens)))
    cache = CompileCache()
    prepared = prepare(agent, registry=registry, plan=Plan.from_dict(plan, source="gpu_check"),
                       model_overrides={model: model}, cache=cache)
    reqs = [Request(i, {"query": "benchmark " * 5}, 0.0, seed=i) for i in range(requests)]
    return run_prepared(prepared, reqs, registry=registry,
                        options=EngineOptions(run_id=new_run_id(), cache_dir=str(cache.root))), prepared


def main() -> int:
    from hetagent.backend import Registry
    from hetagent.models.catalog import card
    from hetagent.models.weight_names import weight_shapes

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=VENDORS, help="default: the first backend detecting a device here")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--report", type=Path, help="also write the figures as JSON into this directory")
    args = parser.parse_args()
    registry = Registry.load()
    found = detected(registry)
    backend = args.backend or next((b for b in VENDORS if b in found), None)
    out = args.report or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    if backend is None or backend not in found:
        reasons = {d.backend: d.reason for d in registry.detect() if not d.available}
        print(f"no accelerator detected here ({'; '.join(f'{b}: {r}' for b, r in reasons.items())}); "
              "nothing to check on a device")
        return 0
    device = found[backend]
    rows.append(("backend / device", f"{backend} / {device}"))
    rows.append(("conformance a-e", json.dumps(conformance(backend, out))))

    model = card("small-llama")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result, prepared = run(work, registry, {"default": {"device": device}}, model="small-llama",
                               tokens=args.tokens, requests=1)
        gaps = [g for r in result.records for g in r.gaps]
        step = statistics.median(gaps) if gaps else float("nan")
        kernel = next(n.kernel for n in prepared.program.nodes() if n.op == "llm.decode")
        weight_bytes = sum(4 * math.prod(s) for s in weight_shapes(model).values())
        kv_bytes = 4 * model.num_layers * 2 * model.num_kv_heads * kernel.function["capacity"] * model.head_size
        bandwidth = registry.profile(device).memory_bandwidth_gbs
        rows.append(("decode batch 1, tokens/s", f"{1 / step:.1f}  (median step {step * 1e3:.2f} ms)"))
        rows.append(("decode bandwidth fraction",
                     f"{(weight_bytes + kv_bytes) / step / 1e9 / bandwidth:.1%} of {bandwidth:,.0f} GB/s"))

        host = registry.host.device
        split, _ = run(work, registry, {"placements": {"answer.prefill": {"device": device},
                                                       "answer.decode": {"device": host}}},
                       model="tiny-llama", tokens=16, requests=4)
        same, _ = run(work, registry, {}, model="tiny-llama", tokens=16, requests=4)
        match = [r.outputs for r in split.records] == [r.outputs for r in same.records]
        (transfer,) = split.transfers or ({},)
        rows.append(("KV transfer", f"{', '.join(transfer.get('routes', []))}: {transfer.get('bytes_p50', 0):,.0f} B, "
                                    f"store {transfer.get('store_ms_p50') or 0:.3f} ms, "
                                    f"load {transfer.get('load_ms_p50') or 0:.3f} ms"))
        rows.append(("tokens equal to the all-host run", "yes" if match else "NO"))

    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    (out / "gpu_check.json").write_text(json.dumps(dict(rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
