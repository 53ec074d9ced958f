"""Prefix caching (issue 17, item 5): the same workloads with and without the workers' prefix cache, in one run.

    .venv/bin/python benchmarks/bench_prefix_cache.py [--conversations 3] [--turns 8] [--rounds 4]
                                                      [--workload chat|voice] [--json]

1. Multi-turn chat: `--conversations` chats of `--turns` turns on an agent of one LLM call (tiny-llama stand-in,
   fp32, prompt capacity 1280: the longest conversation fits, so no prompt loses its start to truncation), prefill
   and decode on two CPU workers. Every chat starts with the same system
   text; each turn the client resends the whole conversation — the earlier turns, the model's answers, and a new
   user message — as chat clients do. A turn's requests arrive together; the next turn starts when they end.
2. The voice agent (`examples/voice_agent.mlir`, as `hetagent run` runs it): `--rounds` rounds of four callers,
   each caller asking one of four questions (a fixed audio clip per question), so from the second round on a
   question has been asked before; within a request the answer's prompt starts with the planner's.

For each workload and both settings: prompt tokens prefilled (computed: the prompt less what came from a
cache), TTFT (arrival to the first token of the answer) mean and p50, and whether every request's tokens are
identical. Targets: computed tokens and mean TTFT both >= 3x lower with the cache, identical tokens.
The machine's load average is printed: figures taken while other processes run are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAT = """"agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %a = "llm.call"(%q) {model = "llama-3-8b", dtype = "fp32", input_tokens = 1280 : i64, output_tokens = 16 : i64,
                       name = "chat"} : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "chat", sla_ms = 600000.0 : f64} : () -> ()
"""
SYSTEM = ("You are a helpful assistant for a hardware shop. Answer briefly and politely, cite the catalogue when "
          "you can, and never invent prices or delivery dates. ") * 2


def _prepare(agent: Path):
    from hetagent.backend import Registry
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.run import prepare

    registry = Registry.load(["cpu"])
    return prepare(agent, registry=registry, cpu_partitions=2, cache=CompileCache())


def _engine(prepared, prefix_cache_mb: float):
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.engine import EngineOptions, LocalEngine
    from hetagent.runtime.run import new_run_id

    options = EngineOptions(run_id=new_run_id(), cache_dir=str(CompileCache().root), corpus=str(ROOT / "examples" / "corpus"),
                            prefix_cache_mb=prefix_cache_mb, admission="limit")
    return LocalEngine(prepared.program, prepared.workers, options, kernels_of=prepared.kernels_of)


def chat(prepared, prefix_cache_mb: float, conversations: int, turns: int):
    from hetagent.runtime.engine import Request

    records = []
    with _engine(prepared, prefix_cache_mb) as engine:
        history = [SYSTEM for _ in range(conversations)]
        for turn in range(turns):
            requests = []
            for c in range(conversations):
                history[c] += f"\nUser: customer {c}, question {turn}: do you stock part number {1000 * c + 37 * turn}?"
                requests.append(Request(len(records) + c, {"query": history[c]}, 0.0, seed=c))
            done = engine.run(requests)
            for c, record in enumerate(done):
                history[c] += "\nAssistant: " + "".join(record.tokens.get("chat.decode", [""]))
            records += done
        return records, list(engine.ops)


def voice(prepared, prefix_cache_mb: float, rounds: int):
    from hetagent.runtime.engine import Request
    from hetagent.runtime.workload import QUESTIONS, synthetic_audio

    clips = [synthetic_audio(100 + q, 2.0, 16000) for q in range(len(QUESTIONS))]
    records = []
    with _engine(prepared, prefix_cache_mb) as engine:
        for _ in range(rounds):
            requests = [Request(len(records) + q, {"query": question, "audio": clips[q]}, 0.0, seed=q)
                        for q, question in enumerate(QUESTIONS)]
            records += engine.run(requests)
        return records, list(engine.ops)


def figures(records, ops) -> dict:
    from hetagent.runtime.report import prefix_cache

    failed = [r.error for r in records if r.status != "ok"]
    if failed:
        raise SystemExit(f"requests failed: {failed[:3]}")
    ttft = [(r.first_token - r.arrival) * 1000 for r in records]
    return {**prefix_cache(ops), "ttft_ms_mean": statistics.fmean(ttft), "ttft_ms_p50": statistics.median(ttft),
            "tokens": [r.tokens for r in records], "outputs": [str(r.outputs) for r in records]}


def compare(name: str, run) -> dict:
    off, on = figures(*run(0.0)), figures(*run(256.0))
    row = {
        "workload": name, "requests": len(on["tokens"]),
        "computed_tokens_off": off["computed_tokens"], "computed_tokens_on": on["computed_tokens"],
        "computed_ratio": off["computed_tokens"] / max(1, on["computed_tokens"]),
        "hit_rate_on": on["hit_rate"], "saved_tokens_on": on["saved_tokens"],
        "ttft_ms_mean_off": off["ttft_ms_mean"], "ttft_ms_mean_on": on["ttft_ms_mean"],
        "ttft_ratio": off["ttft_ms_mean"] / on["ttft_ms_mean"],
        "ttft_ms_p50_off": off["ttft_ms_p50"], "ttft_ms_p50_on": on["ttft_ms_p50"],
        "identical_tokens": off["tokens"] == on["tokens"] and off["outputs"] == on["outputs"],
    }
    row["meets_target"] = row["computed_ratio"] >= 3 and row["ttft_ratio"] >= 3 and row["identical_tokens"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workload", choices=("chat", "voice"), help="only this one (default: both)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        agent = Path(work) / "chat.mlir"
        agent.write_text(CHAT)
        rows = []
        if args.workload in (None, "chat"):
            prepared = _prepare(agent)
            rows.append(compare(f"multi-turn chat ({args.conversations} chats x {args.turns} turns)",
                                lambda mb: chat(prepared, mb, args.conversations, args.turns)))
        if args.workload in (None, "voice"):
            prepared = _prepare(ROOT / "examples" / "voice_agent.mlir")
            rows.append(compare(f"voice agent ({args.rounds} rounds x 4 callers)",
                                lambda mb: voice(prepared, mb, args.rounds)))
    if args.json:
        print(json.dumps({"load_average": load, "rows": rows}, indent=2))
        return 0
    print(f"load average at start: {load:.1f} (on {os.cpu_count()} cores)", file=sys.stderr)
    for r in rows:
        print(f"\n{r['workload']}: {r['requests']} requests")
        print(f"  prompt tokens computed   without cache {r['computed_tokens_off']:>7,}   with {r['computed_tokens_on']:>7,}"
              f"   {r['computed_ratio']:.1f}x lower  (hit rate {r['hit_rate_on']:.0%}, {r['saved_tokens_on']:,} reused)")
        print(f"  TTFT mean ms             without cache {r['ttft_ms_mean_off']:>7.0f}   with {r['ttft_ms_mean_on']:>7.0f}"
              f"   {r['ttft_ratio']:.1f}x lower  (p50 {r['ttft_ms_p50_off']:.0f} -> {r['ttft_ms_p50_on']:.0f})")
        print(f"  identical tokens: {'yes' if r['identical_tokens'] else 'NO'}   target (>= 3x both, identical): "
              f"{'met' if r['meets_target'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
