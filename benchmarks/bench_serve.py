"""Serving figures (issue 8), printed, not asserted:

    .venv/bin/python benchmarks/bench_serve.py [--seconds 10] [--sla-ms 1000] [--batch 1] [--clients 1,16,64]
                                               [--admission sla|limit]

The tiny model (tiny-llama: one LLM call, 24 output tokens, prefill and decode kernels of batch --batch) under a
closed loop of N clients, each sending its next request as soon as its last one ends (a rejected one waits the
Retry-After second first, as a well-behaved client does), for 1, 16 and 64 clients, under the server's admission
policy (--admission: `sla`, the default, rejects what it predicts will miss the SLA; `limit` only caps requests in
flight at 64), two ways:

- serve:  `hetagent serve` in its own process, driven over HTTP on 127.0.0.1 by the official `openai` client
          (AsyncOpenAI, all clients in one event loop);
- engine: the same prepared agent on the same engine (`LocalEngine`, what `hetagent run` uses) fed the same
          closed loop in-process: no HTTP, no client library.

Per way and load: requests/s that finished within the SLA (sustained over the window after a warm-up), SLA
attainment over every request sent (rejections count as misses), p50/p99 latency of finished requests (serve:
as the client saw it), and requests rejected by admission control. Then serve vs engine: the throughput ratio,
and the HTTP layer's cost per request — the client's mean latency minus the engine's mean end-to-end for the same
requests (from the server's /metrics), i.e. HTTP, JSON, the openai client and the hand-off to the engine thread.
Clients, server and workers share this machine's cores: the client's CPU time is part of the serve figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
AGENT = """"agent.graph"() ({
  %q = "input.query"() {tokens = 32 : i64} : () -> !agent.text
  %a = "llm.call"(%q) {model = "llama-3-8b", input_tokens = 64 : i64, output_tokens = 24 : i64, name = "answer"}
      : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "chat", sla_ms = SLA : f64} : () -> ()
"""
PROMPT = "What is the boiling point of water at the top of Mount Everest?"
WARMUP_S = 2.0


def window_figures(done: list[tuple[float, float, bool]], rejected: int, sent: int, window_s: float, sla_s: float):
    """done: (start, latency, ok) of requests sent in the window."""
    ok = [latency for _, latency, good in done if good]
    met = sum(latency <= sla_s for latency in ok)
    return {"rps_at_sla": met / window_s, "attainment": met / max(1, sent), "sent": sent, "rejected": rejected,
            "p50_ms": float(np.percentile(ok, 50)) * 1000 if ok else None,
            "p99_ms": float(np.percentile(ok, 99)) * 1000 if ok else None,
            "mean_s": float(np.mean(ok)) if ok else None}


# -------------------------------------------------------------------------------------------------- engine

def engine_load(prepared, clients: int, seconds: float, sla_ms: float, admission: str) -> dict:
    from hetagent.compiler.cache import CompileCache
    from hetagent.runtime.engine import EngineOptions, LocalEngine, Request
    from hetagent.runtime.run import new_run_id

    options = EngineOptions(run_id=new_run_id(), cache_dir=str(CompileCache().root), sla_ms=sla_ms,
                            admission=admission)
    with LocalEngine(prepared.program, prepared.workers, options,
                     kernels_of=prepared.kernels_of) as engine:
        ids = itertools.count()
        free_at: list[float] = []  # when each idle client sends its next request
        records = []

        def finished(record):
            free_at.append(time.monotonic() + (1.0 if record.status == "rejected" else 0.0))
            records.append(record)

        engine.on_finish = finished
        start = time.monotonic()
        free_at += [start] * clients
        end = start + WARMUP_S + seconds
        while time.monotonic() < end or engine.snapshot().inflight:
            now = time.monotonic()
            due = [t for t in free_at if t <= now] if now < end else []
            free_at[:] = [t for t in free_at if t > now]
            for _ in due:
                i = next(ids)
                engine.submit(Request(i, {"query": PROMPT}, 0.0, seed=i))
            wait = min([t - now for t in free_at if t > now] + [0.05])
            engine.poll(max(0.0, wait))
    measured = [r for r in records if start + WARMUP_S <= r.arrival and r.end <= end]
    done = [(r.arrival, r.end - r.arrival, r.status == "ok") for r in measured if r.status != "rejected"]
    return window_figures(done, sum(r.status == "rejected" for r in measured), len(measured), seconds, sla_ms / 1000)


# -------------------------------------------------------------------------------------------------- serve

def start_server(agent: Path, plan: Path, admission: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "hetagent", "--backends", "cpu", "serve", str(agent), "--plan",
                                str(plan), "--admission", admission, "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    for line in process.stdout:
        if found := re.search(r"serving \S+ on (http://\S+/v1)", line):
            return process, found[1]
    raise SystemExit(f"hetagent serve exited {process.wait()}")


def engine_e2e(url: str) -> tuple[float, float]:
    """The server's (sum, count) of engine end-to-end seconds, from /metrics."""
    import urllib.request

    text = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=30).read().decode()
    value = {name: float(v) for name, v in re.findall(r"^hetagent_request_seconds_(sum|count)\{[^}]*\} (\S+)$", text,
                                                       re.MULTILINE)}
    return value.get("sum", 0.0), value.get("count", 0.0)


async def http_load(url: str, clients: int, seconds: float, sla_ms: float) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    start = time.monotonic()
    window, end = start + WARMUP_S, start + WARMUP_S + seconds
    done, counts = [], {"sent": 0, "rejected": 0}
    before = None

    async def one_client():
        while time.monotonic() < end:
            sent = time.monotonic()
            try:
                await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": PROMPT}])
                ok, rejected = True, False
            except (openai.RateLimitError, openai.InternalServerError) as exc:
                ok, rejected = False, exc.status_code in (429, 503)
            now = time.monotonic()
            if sent >= window and now <= end:
                counts["sent"] += 1
                counts["rejected"] += rejected
                if not rejected:
                    done.append((sent, now - sent, ok))
            if rejected:
                await asyncio.sleep(1.0)

    async def mark_window():
        nonlocal before
        await asyncio.sleep(WARMUP_S)
        before = await asyncio.to_thread(engine_e2e, url)

    await asyncio.gather(mark_window(), *(one_client() for _ in range(clients)))
    after = await asyncio.to_thread(engine_e2e, url)
    await client.close()
    figures = window_figures(done, counts["rejected"], counts["sent"], seconds, sla_ms / 1000)
    # the engine's mean end to end over (about) the same requests: those that ended after the warm-up
    n = after[1] - before[1]
    figures["engine_mean_s"] = (after[0] - before[0]) / n if n else None
    return figures


# -------------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per load (after a 2 s warm-up)")
    parser.add_argument("--sla-ms", type=float, default=1000.0, help="end-to-end SLA of every request")
    parser.add_argument("--batch", type=int, default=1, help="prefill and decode batch of the plan (1, the default "
                        "placement, is the fastest for this tiny model on CPU cores: a static batch-16 kernel costs "
                        "about as much per step at one sequence as at 16)")
    parser.add_argument("--clients", default="1,16,64", help="concurrent clients, comma-separated")
    parser.add_argument("--admission", choices=("sla", "limit"), default="sla", help="the engine's admission policy")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    from hetagent.cli.output import print_table
    from hetagent.plan import Plan
    from hetagent.compiler.cache import CompileCache
    from hetagent.backend import Registry
    from hetagent.runtime.run import prepare

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    agent, plan_file = work / "chat.mlir", work / "plan.json"
    agent.write_text(AGENT.replace("SLA", f"{args.sla_ms:.1f}"))
    plan_file.write_text(json.dumps({"placements": {
        label: {"device": "host-cpu", "batch": args.batch} for label in ("answer.prefill", "answer.decode")}}))
    prepared = prepare(agent, registry=Registry.load(["cpu"]), plan=Plan.load(plan_file), cache=CompileCache())

    results = {"serve": {}, "engine": {}}
    process, url = start_server(agent, plan_file, args.admission)
    try:
        for clients in levels:
            results["serve"][clients] = asyncio.run(http_load(url, clients, args.seconds, args.sla_ms))
    finally:
        process.terminate()
        process.wait(timeout=30)
    for clients in levels:
        results["engine"][clients] = engine_load(prepared, clients, args.seconds, args.sla_ms, args.admission)

    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"sla_ms": args.sla_ms, "batch": args.batch, "admission": args.admission,
                          "load_average": load, **results}, indent=2))
        return

    def ms(value):
        return None if value is None else round(value, 1)

    print_table(f"serving tiny-llama (SLA {args.sla_ms:.0f} ms, admission {args.admission}, batch {args.batch}, "
                f"{args.seconds:.0f} s per load, load average {load:.1f})",
                ["clients", "way", "req/s at SLA", "SLA attainment", "p50 ms", "p99 ms", "sent", "rejected"],
                [(c, way, round(r["rps_at_sla"], 1), f"{r['attainment'] * 100:.0f} %", ms(r["p50_ms"]), ms(r["p99_ms"]),
                  r["sent"], r["rejected"])
                 for c in levels for way, r in (("serve", results["serve"][c]), ("engine", results["engine"][c]))])
    rows = []
    for c in levels:
        s, e = results["serve"][c], results["engine"][c]
        http_ms = (s["mean_s"] - s["engine_mean_s"]) * 1000 if s["mean_s"] and s["engine_mean_s"] else None
        rows.append((c, round(s["rps_at_sla"] / e["rps_at_sla"], 2) if e["rps_at_sla"] else None,
                     ms(s["p50_ms"] - e["p50_ms"]) if s["p50_ms"] and e["p50_ms"] else None, ms(http_ms)))
    print_table("HTTP layer vs the engine alone", ["clients", "req/s at SLA: serve / engine",
                                                   "p50 latency added ms", "HTTP ms per request (client - engine e2e)"],
                rows)


if __name__ == "__main__":
    main()
