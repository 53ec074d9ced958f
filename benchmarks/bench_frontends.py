"""Front-end figures: tracing a Python agent and importing a LangGraph graph, against parsing the same agent's
`.mlir` text in the same run (the ratio is the figure; absolute times move with this shared machine).

    .venv/bin/python benchmarks/bench_frontends.py [--repeat 20]

Target: tracing costs no more than 1.5x parsing the equivalent text (both build a module in a fresh MLIR context).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from hetagent.agent.langgraph import import_graph
    from hetagent.agent.source import load_object
    from hetagent.ir import load

    print(f"{'agent':<34} {'front-end ms':>12} {'parse .mlir ms':>15} {'ratio':>6}")
    for name in ("voice_agent", "rag_qa", "research_agent"):
        traced = load_object(f"{EXAMPLES}/python/{name}.py:{name}")
        trace = median_ms(traced.trace, args.repeat)
        parse = median_ms(lambda: load(EXAMPLES / f"{name}.mlir"), args.repeat)
        print(f"{'trace ' + name:<34} {trace:>12.2f} {parse:>15.2f} {trace / parse:>6.2f}")
    for name in ("react", "rag", "supervisor"):
        spec = f"{EXAMPLES}/langgraph/{name}.py:graph"
        graph = load_object(spec)
        took = median_ms(lambda: import_graph(graph, name=name, origin=spec), args.repeat)
        print(f"{'import langgraph ' + name:<34} {took:>12.2f} {'-':>15} {'-':>6}")


if __name__ == "__main__":
    main()
