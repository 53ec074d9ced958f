"""`hetagent serve`: an agent behind an OpenAI-compatible HTTP API (`spec/serve.md`)."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import sys
from pathlib import Path

from hetagent.cli.compile_command import _pairs
from hetagent.cli.output import console
from hetagent.cli.run_command import _checkout_path, _progress
from hetagent.errors import HetagentError

API_KEY_ENV = "HETAGENT_API_KEY"


def register(commands) -> None:
    p = commands.add_parser(
        "serve",
        help="serve an agent over an OpenAI-compatible HTTP API (chat completions, streaming, /metrics)",
        description="Compile an agent (cached), start its workers and serve it over HTTP: POST /v1/chat/completions "
        "(streamed or not), GET /v1/models (model id = the agent's name), /health and Prometheus /metrics. Needs "
        "the serve extra: pip install 'hetagent[serve]'.",
    )
    p.add_argument("agent", type=Path, help="an agent module (.mlir)")
    p.add_argument("--plan", type=Path, help="a plan (JSON, spec/plan-format.md); default: everything on the host CPU")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this node; ray: a Ray cluster (hetagent[ray])")
    p.add_argument("--address", help="with --engine ray: the cluster to join (default: start Ray locally)")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"require 'Authorization: Bearer KEY' on /v1 (default ${API_KEY_ENV}; none: no auth)")
    p.add_argument("--model-dir", type=Path, help="DIR/<model>/*.safetensors: real weights for those models")
    p.add_argument("--model-map", action="append", default=[], metavar="FROM=TO",
                   help="run model TO where the agent names FROM (default: tiny stand-ins for models without weights)")
    p.add_argument("--cpu-partitions", type=int, default=1, metavar="N",
                   help="split the host's cores into N pinned CPU workers (N >= 2: prefill and decode apart)")
    p.add_argument("--strict-placement", action="store_true", help="an op its placed backend cannot run is an error")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
    p.add_argument("--store", action="append", default=[], metavar="NAME=INDEX", help="a memory store's index")
    p.add_argument("--tool", action="append", default=[], metavar="NAME=URL", help="an HTTP tool (POST JSON)")
    p.add_argument("--corpus", type=Path, help="the corpus web_search reads (default examples/corpus)")
    p.add_argument("--pricebook", type=Path, help="price book (TOML) for the $/request metric (default: the paper's)")
    p.add_argument("--max-inflight", type=int, default=64, help="admission control: requests in flight at most "
                   "(more get 429)")
    p.add_argument("--admission", choices=("sla", "limit"), default="sla",
                   help="sla: also reject (503) requests predicted to miss the SLA; limit: only --max-inflight")
    p.add_argument("--sla-ms", type=float, help="end-to-end SLA of every request (default: the agent's sla_ms)")
    p.set_defaults(handler=cmd_serve)


def _listen(host: str, port: int) -> socket.socket:
    """Bind before anything slow starts, so a taken port is a clear error at once, not after the workers."""
    if not 0 <= port <= 65535:
        raise HetagentError(f"--port {port}: must be between 0 and 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
        # it Nagle's algorithm holds each response body back ~40 ms behind the delayed ACK of its headers
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise HetagentError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    return sock


def _engine_class(args):
    if args.engine == "local":
        if args.address:
            raise HetagentError("--address joins a Ray cluster: it needs --engine ray")
        from hetagent.runtime.engine import LocalEngine

        return LocalEngine, {}
    # asked before compiling anything (the engine would say so too, but only once the agent is compiled)
    if importlib.util.find_spec("ray") is None:
        raise HetagentError("--engine ray needs Ray: pip install 'hetagent[ray]'")
    from hetagent.runtime.ray_engine import RayEngine

    return RayEngine, {"address": args.address}


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from hetagent.serve.api import create_app
        from hetagent.serve.metrics import ServeMetrics
        from hetagent.serve.service import AgentService
    except ImportError as exc:
        raise HetagentError(f"hetagent serve needs FastAPI, uvicorn and prometheus_client: pip install "
                            f"'hetagent[serve]' ({exc})") from None
    from hetagent.compiler import Plan
    from hetagent.compiler.cache import CompileCache
    from hetagent.hardware.pricebook import default_pricebook, load_pricebook
    from hetagent.plugins.registry import Registry, requested_backends
    from hetagent.runtime import report
    from hetagent.runtime.engine import EngineOptions
    from hetagent.runtime.layout import check_partitions
    from hetagent.runtime.run import new_run_id, prepare

    if args.api_key == "":
        raise HetagentError(f"--api-key (or ${API_KEY_ENV}) is empty: give a key, or unset it to serve without auth")
    if args.max_inflight < 1:
        raise HetagentError(f"--max-inflight {args.max_inflight}: must be >= 1")
    if args.sla_ms is not None and args.sla_ms <= 0:
        raise HetagentError(f"--sla-ms {args.sla_ms}: must be > 0")
    if args.model_dir and not args.model_dir.is_dir():
        raise HetagentError(f"--model-dir {args.model_dir}: not a directory")
    check_partitions(args.cpu_partitions)
    engine_class, engine_extra = _engine_class(args)
    registry = Registry.load(requested_backends(args.backends))
    plan = Plan.load(args.plan) if args.plan else None
    book = load_pricebook(args.pricebook) if args.pricebook else default_pricebook()
    sock = _listen(args.host, args.port)
    try:
        cache = CompileCache()
        with _progress(False) as bar:
            task = bar.add_task("placing", total=None, stage="compile")
            prepared = prepare(args.agent, registry=registry, plan=plan, model_dir=args.model_dir,
                               model_overrides=dict(_pairs(args.model_map, "--model-map", "FROM=TO")),
                               cpu_partitions=args.cpu_partitions, strict=args.strict_placement, cache=cache,
                               progress=lambda d, a, t: bar.update(task, description=d, advance=a, total=t),
                               local=args.engine == "local")
            bar.update(task, stage="start", description="starting workers")
            options = EngineOptions(
                run_id=new_run_id(), cache_dir=str(cache.root),
                model_dir=str(args.model_dir) if args.model_dir else None,
                corpus=str(args.corpus or _checkout_path("examples/corpus")),
                stores=dict(_pairs(args.store, "--store", "NAME=INDEX")),
                http_tools=dict(_pairs(args.tool, "--tool", "NAME=URL")), temperature=args.temperature,
                max_inflight=args.max_inflight, admission=args.admission, sla_ms=args.sla_ms,
            )
            devices = {w.device: registry.profile(w.device).tdp_w for w in prepared.workers}
            usd_per_hour, price_note = report.fleet_usd_per_hour(devices, book)
            engine = engine_class(prepared.program, prepared.workers, prepared.device_of, options,
                                  kernels_of=prepared.kernels_of, **engine_extra)
        service = AgentService(engine, ServeMetrics(prepared.program.name, usd_per_hour))
        try:
            app = create_app(service, prepared.program, api_key=args.api_key)
            for model, standin in prepared.substitutions.items():
                console.print(f"model {model} -> {standin} (tiny stand-in with random weights)", highlight=False)
            if price_note:
                console.print(f"$/request metric: {price_note}", highlight=False, soft_wrap=True)
            host, port = sock.getsockname()[:2]
            console.print(f"serving {prepared.program.name} on http://{host}:{port}/v1 ({len(prepared.workers)} "
                          f"worker(s), {args.engine} engine{', API key required' if args.api_key else ''})",
                          highlight=False, soft_wrap=True)
            # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again: SIGINT ends as
            # KeyboardInterrupt, SIGTERM here as a normal exit, both through the `finally` that stops the workers
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=5)
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            service.close()
    finally:
        sock.close()
    return 0
