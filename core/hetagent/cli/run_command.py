"""`hetagent run` (an agent on this node, end to end, with a report) and `hetagent index` (a memory store)."""

from __future__ import annotations

import json
from pathlib import Path

from hetagent.cli import limits
from hetagent.cli.engine_args import AGENT_FORMS, add_engine_arguments, checkout_path, engine_class, engine_options, prepare_agent, progress
from hetagent.cli.output import add_json_flag, console, print_json, print_table
from hetagent.backend.text import Sampling
from hetagent.errors import HetagentError
from hetagent.hardware.machine_load import cores

DEFAULT_AGENT = "examples/voice_agent.mlir"
DEFAULT_REQUESTS = 4
DEFAULT_TRACE_REQUESTS = 32
HOST_PARTITIONS = 2  # the default run plans this host as this many CPU partitions (fewer on a 1-core host)
PLANNED_SECONDS = 20.0  # the default run offers requests at the planned rate for about this long
PLANNED_REQUESTS = (4, 200)  # ... but at least / at most this many


def register(commands) -> None:
    p = commands.add_parser(
        "run",
        help="run an agent on this node: compile (cached), start workers, run requests, report latency and cost",
        description="Run an agent end to end on this node's devices (LocalEngine: one worker process per placed "
        "device), or on a Ray cluster (--engine ray: one actor pool per device class). Models whose weights are not "
        f"given (--model-dir) run as tiny random-weight stand-ins, listed in the report. Without arguments: "
        f"{DEFAULT_AGENT}, planned first on this host (its CPU partitions as device classes, its calibration as the "
        "cost model: placement, batch and the request rate it sustains), then run open-loop at that rate against "
        "an SLA fixed from the plan. --plan, --cpu-partitions or an AGENT run as given, without planning "
        "(--plan-host plans this host for an AGENT too).",
    )
    p.add_argument("agent", nargs="?", help=f"{AGENT_FORMS} (default {DEFAULT_AGENT})")
    add_engine_arguments(p)
    p.add_argument("--requests", type=limits.REQUESTS, help=f"number of requests (default {DEFAULT_REQUESTS}; "
                   f"{DEFAULT_TRACE_REQUESTS} with --trace)")
    p.add_argument("--rate", type=limits.RATE, help="requests per second (Poisson; with --trace, the replay's mean rate); "
                   "default: all requests at once")
    p.add_argument("--trace", type=Path, help="replay the arrivals of a request trace (CSV with TIMESTAMP)")
    p.add_argument("--plan-host", action="store_true",
                   help="plan this host first, as `run` without arguments does, for the AGENT given")
    p.add_argument("--dry-run", action="store_true",
                   help="plan this host and print the plan (rate, SLA, placements, predictions); compile and run nothing")
    p.add_argument("--seed", type=limits.number(0, 2**63 - 1, integer=True), default=0, help="request seed (sampling, synthetic audio)")
    p.add_argument("--prompt", help="the text of every request (default: a few fixed questions in turn)")
    p.add_argument("--max-tokens", type=int, help="each answer's token limit (capped by the IR's output_tokens)")
    p.add_argument("--top-p", type=float, help="nucleus sampling: keep the most likely tokens up to this mass")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens (0: all)")
    p.add_argument("--stop", action="append", default=[], help="end the answer before this text (repeatable)")
    p.add_argument("--trace-out", type=Path, help="write an OpenTelemetry (OTLP/JSON) trace of the run")
    p.add_argument("--replan", action="store_true",
                   help="resize worker pools while running when measured rate or op latencies drift from --plan's "
                   "(a plan written by `hetagent plan`)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_run)

    i = commands.add_parser("index", help="embed and index a directory of text files (a memory store for FAISS)",
                            description="Chunk every .txt/.md file under DIR, embed the chunks with the embedding "
                            "model's compiled kernel and write a FAISS index to INDEX (pass it as --store NAME=INDEX).")
    i.add_argument("directory", type=Path)
    i.add_argument("-o", "--output", type=Path, required=True)
    i.add_argument("--embed-model", type=_model_id, default="tiny-llama", help="embedding model (default tiny-llama, random weights)")
    i.add_argument("--model-dir", type=Path, help="DIR/<model>/*.safetensors: real weights")
    add_json_flag(i)
    i.set_defaults(handler=cmd_index)


def cmd_run(args) -> int:
    import signal
    import sys

    # SIGTERM ends the run as Ctrl-C does: through the engine's clean-up (workers stopped, segments unlinked)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from hetagent.compiler.cache import CompileCache
    from hetagent.hardware.pricebook import load_pricebook
    from hetagent.backend.registry import Registry, requested_backends
    from hetagent.runtime import workload
    from hetagent.runtime.run import run_prepared

    agent = args.agent or checkout_path(DEFAULT_AGENT)
    if args.trace and args.rate is None:
        raise HetagentError("--trace needs --rate R (the mean request rate to replay it at)")
    sampling = _sampling(args)  # bad values are refused before anything compiles
    make_engine = engine_class(args)
    replanner = _replanner(args)
    registry = Registry.load(requested_backends(args.backends))
    book = load_pricebook(args.pricebook) if args.pricebook else None
    cache = CompileCache()
    plans_host = args.plan_host or args.dry_run or not (args.agent or args.plan or args.cpu_partitions or args.trace
                                                        or args.engine != "local")
    if plans_host and (args.plan or args.cpu_partitions or args.trace or args.engine != "local"):
        raise HetagentError("--plan-host / --dry-run plan this host for the local engine: not with --plan, "
                            "--cpu-partitions, --trace or --engine ray")
    hosted = None
    with progress(args.json) as bar:
        task = bar.add_task("placing", total=None, stage="compile")

        def compiled(description: str, advance: int, total: int) -> None:
            bar.update(task, description=description, advance=advance, total=total)

        if plans_host:
            bar.update(task, stage="plan", description="planning this host")
            hosted = _plan_host(agent, args, registry, cache, book,
                                lambda done, total, what: bar.update(task, stage="calibrate", description=what,
                                                                     completed=done, total=total))
            args.cpu_partitions = hosted.partitions
            args.rate = args.rate or hosted.rate_rps
            if args.dry_run:
                return _print_dry_run(hosted, args)
            bar.update(task, stage="compile", description="placing", completed=0, total=None)
        prepared = prepare_agent(agent, args, registry=registry, cache=cache, on_progress=compiled,
                                 plan=hosted.plan if hosted else None)
        audio = next((n.attrs for n in prepared.program.nodes() if n.op == "input.audio"), {})
        count = args.requests or (DEFAULT_TRACE_REQUESTS if args.trace else _planned_requests(args.rate) if hosted
                                  else DEFAULT_REQUESTS)
        requests = workload.requests(count, rate=args.rate, trace=args.trace, prompt=args.prompt, seed=args.seed,
                                     audio_seconds=audio.get("duration_s", 2.0),
                                     sample_rate=audio.get("sample_rate", 16000), sampling=sampling)
        bar.update(task, stage="run", description="starting workers", completed=0, total=len(requests))
        options = engine_options(args, cache)
        if hosted and args.sla_ms is None:
            options.sla_ms = hosted.sla_ms
        result = run_prepared(prepared, requests, registry=registry, options=options,
                              pricebook=book,
                              on_finish=lambda record: bar.update(task, advance=1, description=f"request {record.id} "
                                                                  f"{record.status}"),
                              engine_class=make_engine, engine_hook=replanner.tick if replanner else None)
    replans = [{"at_s": d.at - result.records[0].arrival if result.records else 0.0, "factors": d.factors,
                "replicas": d.replicas} for d in (replanner.decisions if replanner else [])]
    if args.trace_out:
        args.trace_out.write_text(json.dumps(result.trace) + "\n")
    planned = _planned(hosted, result, args) if hosted else None
    if args.json:
        print_json({**result.as_json(), **({"replans": replans} if replanner else {}),
                    **({"host_plan": planned} if planned else {})})
    else:
        if planned:
            _print_plan(planned)
        _print_report(agent, result, args)
        for r in replans:
            console.print(f"re-planned at {r['at_s']:.1f} s: pools " + ", ".join(f"{k} x{v}" for k, v in r["replicas"].items())
                          + " (actual/expected: " + ", ".join(f"{k} {v:.2g}" for k, v in r["factors"].items() if v != 1)
                          + ")",
                          highlight=False, soft_wrap=True)
    return 0


def _plan_host(agent, args, registry, cache, book, on_calibrate):
    """Plan `agent` (as it will run: stand-ins substituted) on this host's CPU partitions, calibrating first
    (quick, cached) where this host has no calibration yet."""
    from hetagent.cli.compile_command import _pairs
    from hetagent.hardware.pricebook import default_pricebook
    from hetagent.planner.host import ensure_calibration, plan_host
    from hetagent.hardware.machine_load import usable_cores
    from hetagent.runtime.run import runnable_source

    cores = len(usable_cores())
    calibration = ensure_calibration(registry, on_calibrate)
    source = runnable_source(agent, model_dir=args.model_dir, cache=cache,
                             model_overrides=dict(_pairs(args.model_map, "--model-map", "FROM=TO")))
    return plan_host(source, registry=registry, count=min(HOST_PARTITIONS, cores), cores=cores,
                     pricebook=book or default_pricebook(), calibration=calibration)


def _print_dry_run(hosted, args) -> int:
    planned = _planned(hosted, None, args)
    if args.json:
        print_json({"host_plan": planned})
    else:
        _print_plan(planned)
    return 0


def _planned_requests(rate: float) -> int:
    low, high = PLANNED_REQUESTS
    return max(low, min(high, round(rate * PLANNED_SECONDS)))


def _planned(hosted, result, args) -> dict:
    """What the report adds when the run planned this host: the plan, the rate and SLA it fixed, and the plan's
    predictions beside the measurements."""
    from hetagent.runtime.report import plan_rows

    plan = hosted.plan
    sla = (f"--sla-ms {args.sla_ms:g}, given (the plan's: {hosted.sla_ms:.0f} ms, {hosted.sla_rule})"
           if args.sla_ms is not None else hosted.sla_rule)
    rate = hosted.rate_rps if args.rate == hosted.rate_rps else None
    return {
        "partitions": hosted.partitions, "planned_rate_rps": hosted.rate_rps,
        "offered_rate_rps": args.rate, "rate_rule": (
            f"the highest rate whose plan keeps every partition at most "
            f"{plan.problem['max_utilisation']:.0%} busy" if rate else "--rate, given"),
        "sla_ms": args.sla_ms if args.sla_ms is not None else hosted.sla_ms, "sla_rule": sla,
        "predicted_e2e_ms": plan.latency.e2e_s * 1000,
        "predicted_usd_per_request": plan.cost.usd_per_request if plan.cost else None,
        "usd_per_hour": plan.cost.usd_per_hour if plan.cost else None,
        "classes": {name: {"count": d.count, "usd_per_hour": d.usd_per_hour_each, "utilisation": d.utilisation}
                    for name, d in plan.devices.items()},
        "plan_seconds": hosted.plan_seconds, "calibration": hosted.calibration,
        "ops": plan_rows(plan, result.ops if result else [], result.transfers if result else []),
        "plan": plan.to_dict(),
    }


def _print_plan(planned: dict) -> None:
    print_table(f"plan: this host as {planned['partitions']} CPU partitions (planned in {planned['plan_seconds']:.1f} s; "
                f"{planned['calibration']})",
                ["op", "kind", "planned on", "batch", "why", "predicted ms", "measured ms p50", "measured/predicted",
                 "ran on"],
                [(o["op"], o["kind"], o["planned_on"], o["batch"], o["why"], _num(o["predicted_ms"]),
                  _num(o["measured_ms_p50"]), "-" if o["measured_over_predicted"] is None else
                  f"{o['measured_over_predicted']:.2f}", " ".join(o["workers"]) or "-") for o in planned["ops"]])
    rows = [
        ("request rate", f"{planned['offered_rate_rps']:.3g} requests/s, Poisson ({planned['rate_rule']})"),
        ("SLA", f"{planned['sla_ms']:.0f} ms end to end: {planned['sla_rule']}"),
        ("predicted end to end", f"{planned['predicted_e2e_ms']:.0f} ms (the plan's critical path)"),
        ("predicted $/request", "-" if planned["predicted_usd_per_request"] is None
         else f"{planned['predicted_usd_per_request']:.3g} at {planned['usd_per_hour']:.3g} $/h"),
    ]
    print_table("planned", ["", ""], rows)


def _sampling(args) -> Sampling:
    """Every request's sampling, from the command line (the same parameters the server takes per request)."""
    for flag, value, valid in (("--max-tokens", args.max_tokens, lambda v: v >= 1),
                               ("--top-p", args.top_p, lambda v: 0 < v <= 1),
                               ("--top-k", args.top_k, lambda v: v >= 0)):
        if value is not None and not valid(value):
            raise HetagentError(f"{flag} {value}: out of range (--max-tokens >= 1, 0 < --top-p <= 1, --top-k >= 0)")
    if any(not s for s in args.stop):
        raise HetagentError("--stop: the text must not be empty")
    return Sampling(None, args.top_p, args.top_k or None, args.max_tokens, tuple(args.stop))


def _replanner(args):
    """`--replan`: a re-planner holding the expectations of a plan written by `hetagent plan`, else None."""
    if not args.replan:
        return None
    from hetagent.plan import Plan
    from hetagent.runtime.replan import Expectations, Replanner

    if not args.plan:
        raise HetagentError("--replan compares the run with a plan's expectations: give --plan (from `hetagent plan`)")
    return Replanner(Expectations.from_plan(Plan.load(args.plan).require_figures("--replan")))


def _print_report(agent: str, result, args) -> None:
    for model, standin in result.substitutions.items():
        console.print(f"model {model} -> {standin} (tiny stand-in with random weights: no weights given; "
                      "--model-dir or --model-map to change)", highlight=False, soft_wrap=True)
    for fallback in result.fallbacks:
        console.print(f"fallback: {fallback}", highlight=False, soft_wrap=True)
    print_table("workers", ["worker", "device", "cores", "ops"],
                [(w["name"], w["device"], ",".join(map(str, w["cores"])) or "-", " ".join(w["ops"])) for w in result.workers])
    print_table(f"{agent}: per op", ["op", "kind", "workers", "calls", "retries", "failed", "queue ms p50", "run ms p50",
                                     "run ms p99", "overhead µs p50"],
                [(o["op"], o["kind"], " ".join(o["workers"]), o["calls"], o["retries"], o["failed"], o["queue_ms_p50"],
                  o["run_ms_p50"], o["run_ms_p99"], o["overhead_us_p50"]) for o in result.ops])
    if result.transfers:
        print_table("KV transfers (device -> host staging -> kv-format -> device)",
                    ["transfer", "route", "count", "bytes p50", "store ms p50", "load ms p50"],
                    [(t["transfer"], " ".join(t["routes"]), t["count"], t["bytes_p50"], t["store_ms_p50"],
                      t["load_ms_p50"]) for t in result.transfers])
    print_table("per request", ["request", "status", "TTFT ms", "TBT ms", "e2e ms", "SLA met", "error"],
                [(r["request"], r["status"], r["ttft_ms"], r["tbt_ms_mean"], r["e2e_ms"], r["met_sla"], r["error"])
                 for r in result.requests])
    s = result.summary
    rows = [
        ("requests", f"{s['ok']} ok, {s['rejected']} rejected, {s['errors']} failed of {s['requests']}"),
        ("SLA attainment", f"{s['sla_attainment'] * 100:.0f} %"),
        ("end to end p50 / p99 ms", f"{_num(s['e2e_ms_p50'])} / {_num(s['e2e_ms_p99'])}"),
        ("TTFT p50 / p99 ms", f"{_num(s['ttft_ms_p50'])} / {_num(s['ttft_ms_p99'])}"),
        ("time between tokens p50 / p99 ms", f"{_num(s['tbt_ms_p50'])} / {_num(s['tbt_ms_p99'])}"),
        ("throughput", f"{_num(s['requests_per_s'])} requests/s, {_num(s['decode_tokens_per_s'])} tokens/s"),
        ("orchestration overhead p50", f"{_num(s['overhead_us_p50'])} µs per op"),
        ("prefix cache", _prefix_cache(s["prefix_cache"])),
        ("$/request", f"{s['usd_per_request']:.3g}" if s["usd_per_request"] is not None else s["price_note"]),
        ("load average", f"{s['load_average_start']:.1f} -> {s['load_average_end']:.1f} on {cores()} cores"
                         + (f", {s['steal']:.1%} of CPU time stolen" if s["steal"] is not None else "")),
    ]
    print_table(f"{result.agent}: summary ({s['wall_s']:.1f} s)", ["", ""], rows)
    if s["load_warning"]:
        console.print(f"warning: {s['load_warning']}", highlight=False, soft_wrap=True)
    if result.cost_check:
        print_table("cost model check: predicted vs measured", ["op", "device", "per", "samples", "measured ms p50",
                                                               "predicted ms", "error", "efficiency from"],
                    [(c["kind"], c["device"], c["per"], c["samples"], _num(c["measured_ms_p50"]), _num(c["predicted_ms"]),
                      f"{c['error']:+.0%}" if c["error"] is not None else "-", c["basis"]) for c in result.cost_check])
    if args.trace_out:
        console.print(f"wrote {args.trace_out}", highlight=False)


def _prefix_cache(p: dict) -> str:
    if not p["prefills"]:
        return "-"
    return (f"{p['hits']} of {p['prefills']} prefills hit ({p['hit_rate'] * 100:.0f} %); prompt tokens "
            f"{p['saved_tokens']:,} reused, {p['computed_tokens']:,} computed")


def _num(value) -> str:
    return "-" if value is None else f"{value:,.4g}" if value < 1000 else f"{value:,.0f}"


INDEX_AGENT = """"agent.graph"() ({{
  %q = "input.query"() : () -> !agent.text
  %d = "memory.load"(%q) {{store = "index", embed_model = "{model}", name = "index"}} : (!agent.text) -> !agent.docs
  "agent.return"(%d) : (!agent.docs) -> ()
}}) {{sym_name = "index"}} : () -> ()
"""


def _model_id(text: str) -> str:
    """A model id, which names a cache file and goes into generated IR: checked as the verifier checks one."""
    import argparse

    from hetagent.ir.optable import MODEL_ID

    if not MODEL_ID.fullmatch(text) or ".." in text:
        raise argparse.ArgumentTypeError(f"{text!r} is no model id: letters, digits, '.', '_' and '-' only "
                                         "(no '/', no '..'), at most 128 characters")
    return text


def cmd_index(args) -> int:
    import numpy as np

    from hetagent.compiler.cache import CompileCache
    from hetagent.backend.registry import Registry, requested_backends
    from hetagent.backend.stores import build_store, chunks
    from hetagent.runtime.engine import EngineOptions, LocalEngine
    from hetagent.runtime.run import new_run_id, prepare

    chunks(args.directory)  # bad input first, before compiling anything
    cache = CompileCache()
    registry = Registry.load(requested_backends(args.backends))
    agent = cache.root / "runs" / f"index-{args.embed_model}.mlir"
    agent.parent.mkdir(parents=True, exist_ok=True)
    agent.write_text(INDEX_AGENT.format(model=args.embed_model))
    model_map = {args.embed_model: args.embed_model}
    prepared = prepare(agent, registry=registry, model_dir=args.model_dir, model_overrides=model_map, cache=cache)
    node = next(n for n in prepared.program.nodes() if n.op == "memory.embed")
    embedder = [w for w in prepared.workers if w.serves("memory.embed")]
    options = EngineOptions(run_id=new_run_id(), cache_dir=str(cache.root),
                            model_dir=str(args.model_dir) if args.model_dir else None)
    with LocalEngine(prepared.program, embedder, options, kernels_of=prepared.kernels_of) as engine:
        def embed(texts: list[str]):
            return np.stack([values[0] for values in engine.execute(node, [(t,) for t in texts])])

        meta = build_store(args.directory, args.output, embed_model=args.embed_model, embed=embed,
                           write_index=registry.executor_class("memory.search", registry.host.device).write_index)
    if args.json:
        print_json(meta)
    else:
        console.print(f"indexed {meta['count']} chunks of {args.directory} with {args.embed_model} "
                      f"({meta['dim']} dims) into {args.output}", highlight=False, soft_wrap=True)
    return 0
