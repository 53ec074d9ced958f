"""Per-operator dispatch overhead of RayEngine vs LocalEngine, side by side (issue 8), printed, not asserted:

    .venv/bin/python benchmarks/bench_ray.py [--requests 16] [--calls 200]

The same program (a chat agent: prefill and decode of tiny-llama on two CPU partitions, so every KV cache goes
from one worker to another — shared memory locally, the object store on Ray — a tool call and a transform), the
same worker plans and the same requests, run by each engine in turn; Ray on a local single-node cluster that
RayEngine starts (`ray.init()`).

1. overhead per op kind, p50: dispatch to result minus queue and run time (the report's definition), under load;
2. idle round trip: p50 of (dispatch to result - run time) of `data.transform` calls sent one at a time to an
   idle worker (`execute`): the transport's fixed cost alone;
3. wall time and requests/s of the run;
4. for scale: a bare Ray actor call round trip (an echo, `ray.get(actor.echo.remote(x))`), Ray's own floor.

The machine's load average is printed: figures taken while other processes run are not comparable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

AGENT = """"agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %a = "llm.call"(%q) {model = "tiny-llama", input_tokens = 64 : i64, output_tokens = 24 : i64, name = "answer"}
      : (!agent.text) -> !agent.text
  %h = "tool.invoke"(%q) {tool = "calculator", name = "lookup"} : (!agent.text) -> !agent.json
  %r = "data.transform"(%q, %a, %h) {fn = "pii_redact", name = "redact"}
      : (!agent.text, !agent.text, !agent.json) -> !agent.text
  "agent.return"(%r) : (!agent.text) -> ()
}) {sym_name = "bench"} : () -> ()
"""


def prepare(work: Path):
    from hetagent.compiler.cache import CompileCache
    from hetagent.backend import Registry
    from hetagent.runtime.run import prepare

    agent = work / "bench.mlir"
    agent.write_text(AGENT)
    registry = Registry.load(["cpu"])
    return prepare(agent, registry=registry, cpu_partitions=2, cache=CompileCache()), registry


def options():
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.engine import EngineOptions
    from hetagent.runtime.run import new_run_id

    return EngineOptions(run_id=new_run_id(), cache_dir=str(CompileCache().root))


def measure(engine_class, prepared, registry, requests: int, calls: int) -> dict:
    from hetagent.runtime.engine import Request
    from hetagent.runtime.run import run_prepared

    load = [Request(i, {"query": f"question {i}: what is 2 + {i} * 3?"}, 0.0, seed=i) for i in range(requests)]
    result = run_prepared(prepared, load, registry=registry, options=options(), engine_class=engine_class)
    node = next(n for n in prepared.program.nodes() if n.op == "data.transform")
    with engine_class(prepared.program, prepared.workers, options(),
                      kernels_of=prepared.kernels_of) as engine:
        for _ in range(calls):
            engine.execute(node, [("mail me at a@example.com",)])
        trips = [(o.finished - o.dispatched) - o.run_s for o in engine.ops[calls // 10:]]  # the first warm up
    return {
        "ok": result.summary["ok"],
        "ops": {o["kind"]: o["overhead_us_p50"] for o in result.ops if o["overhead_us_p50"] is not None},
        "idle_us": statistics.median(trips) * 1e6,
        "wall_s": result.summary["wall_s"],
        "rps": result.summary["requests_per_s"],
    }


class _Echo:
    def echo(self, value):
        return value


def ray_floor_us(ray, calls: int) -> float:
    echo = ray.remote(_Echo).remote()
    trips = []
    for _ in range(calls):
        start = time.perf_counter()
        ray.get(echo.echo.remote("mail me at a@example.com"))
        trips.append(time.perf_counter() - start)
    ray.kill(echo)
    return statistics.median(trips[calls // 10:]) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    from hetagent.runtime.engine import LocalEngine
    from hetagent.runtime.ray_engine import RayEngine, import_ray

    ray = import_ray()
    with tempfile.TemporaryDirectory() as work:
        prepared, registry = prepare(Path(work))
        local = measure(LocalEngine, prepared, registry, args.requests, args.calls)
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)  # once, for both runs
        try:
            remote = measure(RayEngine, prepared, registry, args.requests, args.calls)
            floor = ray_floor_us(ray, args.calls)
        finally:
            ray.shutdown()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.requests} requests at once, "
          f"{local['ok']} / {remote['ok']} ok (local / ray); Ray {ray.__version__}")
    print(f"{'overhead p50, µs':<24}{'LocalEngine':>14}{'RayEngine':>14}{'ray / local':>14}")
    for kind in sorted(set(local["ops"]) | set(remote["ops"])):
        a, b = local["ops"].get(kind), remote["ops"].get(kind)
        print(f"{kind:<24}{_f(a):>14}{_f(b):>14}{(f'{b / a:.1f}x' if a and b else '-'):>14}")
    print(f"{'idle round trip':<24}{_f(local['idle_us']):>14}{_f(remote['idle_us']):>14}"
          f"{remote['idle_us'] / local['idle_us']:>13.1f}x")
    print(f"{'bare Ray actor call':<24}{'':>14}{_f(floor):>14}")
    print(f"{'wall s / requests per s':<24}{local['wall_s']:>7.2f} /{local['rps']:>5.1f}"
          f"{remote['wall_s']:>7.2f} /{remote['rps']:>5.1f}")


def _f(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    main()
