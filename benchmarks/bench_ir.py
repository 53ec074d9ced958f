"""IR figures: import cost, and verify/decompose time as agents grow.

    .venv/bin/python benchmarks/bench_ir.py [--sizes 10,100,1000]

Prints, per size, ops before and after decomposition and the best-of-N time of parse, verify and decompose,
plus the time per op — the figure to watch: verify and decompose should stay linear in the op count.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def chain_agent(steps: int) -> str:
    """A research-style agent of `steps` (memory.load -> llm.call -> tool.invoke) stages chained together."""
    lines = ['"agent.graph"() ({', '  %v0 = "input.query"() {tokens = 64 : i64} : () -> !agent.text']
    for i in range(steps):
        lines += [
            f'  %d{i} = "memory.load"(%v{i}) {{store = "s", embed_model = "e"}} : (!agent.text) -> !agent.docs',
            f'  %l{i} = "llm.call"(%v{i}, %d{i}) {{model = "llama-3-8b", input_tokens = 512 : i64, output_tokens = 64 : i64}}'
            " : (!agent.text, !agent.docs) -> !agent.text",
            f'  %t{i} = "tool.invoke"(%l{i}) {{tool = "web_search"}} : (!agent.text) -> !agent.json',
            f'  %v{i + 1} = "data.transform"(%l{i}, %t{i}) {{fn = "concat"}} : (!agent.text, !agent.json) -> !agent.text',
        ]
    lines += [f'  "agent.return"(%v{steps}) : (!agent.text) -> ()', '}) {sym_name = "chain"} : () -> ()']
    return "\n".join(lines)


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000", help="agent sizes in stages (4 high-level ops each)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    code = "import time; t = time.perf_counter(); import hetagent; print(time.perf_counter() - t)"
    imports = [float(subprocess.check_output([sys.executable, "-c", code])) for _ in range(5)]
    print(f"import hetagent: best {min(imports) * 1e3:.1f} ms of 5 (target < 500 ms)")
    start = time.perf_counter()
    from hetagent.ir import decompose, parse, verify

    print(f"import hetagent.ir (MLIR bindings): {(time.perf_counter() - start) * 1e3:.1f} ms")

    print(f"{'stages':>7} {'ops':>6} {'ops after':>9} {'parse ms':>9} {'verify ms':>10} {'decompose ms':>13} {'verify µs/op':>13}")
    for steps in (int(s) for s in args.sizes.split(",")):
        text = chain_agent(steps)
        module = parse(text)
        ops = 4 * steps + 3
        t_parse = best_of(lambda: parse(text), args.repeat)
        t_verify = best_of(lambda: verify(module), args.repeat)
        t_decompose = best_of(lambda: decompose(parse(text)), args.repeat) - t_parse
        decomposed = decompose(parse(text))
        after = len(list(decomposed.body.operations[0].regions[0].blocks[0].operations))
        print(
            f"{steps:>7} {ops:>6} {after:>9} {t_parse * 1e3:>9.2f} {t_verify * 1e3:>10.2f} {t_decompose * 1e3:>13.2f}"
            f" {t_verify / ops * 1e6:>13.1f}"
        )


if __name__ == "__main__":
    main()
