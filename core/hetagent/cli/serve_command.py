"""`hetagent serve`: an agent behind an OpenAI-compatible HTTP API (`spec/serve.md`)."""

from __future__ import annotations

import os
import signal
import socket
import sys

from hetagent.cli import limits
from hetagent.cli.engine_args import AGENT_FORMS, add_engine_arguments, engine_class, engine_options, prepare_agent, progress
from hetagent.cli.output import console
from hetagent.errors import HetagentError
from hetagent.serve.request_limits import Limits

API_KEY_ENV = "HETAGENT_API_KEY"


def register(commands) -> None:
    p = commands.add_parser(
        "serve",
        help="serve an agent over an OpenAI-compatible HTTP API (chat completions, streaming, /metrics)",
        description="Compile an agent (cached), start its workers and serve it over HTTP: POST /v1/chat/completions "
        "(streamed or not), GET /v1/models (model id = the agent's name), /health and Prometheus /metrics. Needs "
        "the serve extra: pip install 'hetagent[serve]'.",
    )
    p.add_argument("agent", help=AGENT_FORMS)
    add_engine_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=limits.number(0, 65535, integer=True), default=8000, help="port to listen on (default 8000)")
    p.add_argument("--max-body-bytes", type=limits.number(1, 1 << 30, integer=True), default=Limits.max_body_bytes,
                   help=f"largest request body; larger: 413 (default {Limits.max_body_bytes:,})")
    p.add_argument("--max-concurrent", type=limits.number(1, 100_000, integer=True), default=Limits.max_concurrent,
                   help=f"requests handled at once; more: 503 (default {Limits.max_concurrent})")
    p.add_argument("--header-timeout", type=limits.number(0, 3600, low_open=True), default=Limits.header_timeout_s,
                   help=f"seconds for a request's line and headers to arrive (default {Limits.header_timeout_s:g})")
    p.add_argument("--body-timeout", type=limits.number(0, 3600, low_open=True), default=Limits.body_timeout_s,
                   help=f"seconds for a request's body to arrive; later: 408 (default {Limits.body_timeout_s:g})")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"require 'Authorization: Bearer KEY' on /v1 (default ${API_KEY_ENV}; none: no auth)")
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


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from hetagent.serve.api import create_app
        from hetagent.serve.request_limits import LimitRequests, protocol
        from hetagent.serve.metrics import ServeMetrics
        from hetagent.serve.service import AgentService
    except ImportError as exc:
        raise HetagentError(f"hetagent serve needs FastAPI, uvicorn and prometheus_client: pip install "
                            f"'hetagent[serve]' ({exc})") from None
    from hetagent.compiler.cache import CompileCache
    from hetagent.hardware.pricebook import default_pricebook, load_pricebook
    from hetagent.backend.registry import Registry, requested_backends
    from hetagent.runtime import report

    if args.api_key == "":
        raise HetagentError(f"--api-key (or ${API_KEY_ENV}) is empty: give a key, or unset it to serve without auth")
    make_engine = engine_class(args)
    registry = Registry.load(requested_backends(args.backends))
    book = load_pricebook(args.pricebook) if args.pricebook else default_pricebook()
    sock = _listen(args.host, args.port)
    try:
        cache = CompileCache()
        with progress(False) as bar:
            task = bar.add_task("placing", total=None, stage="compile")
            prepared = prepare_agent(args.agent, args, registry=registry, cache=cache,
                                     on_progress=lambda d, a, t: bar.update(task, description=d, advance=a, total=t))
            bar.update(task, stage="start", description="starting workers")
            usd_per_hour, price_note = report.fleet_usd_per_hour(prepared.workers, registry, book)
            engine = make_engine(prepared.program, prepared.workers, engine_options(args, cache),
                                 kernels_of=prepared.kernels_of)
        service = AgentService(engine, ServeMetrics(prepared.program.name, usd_per_hour))
        try:
            app = LimitRequests(create_app(service, prepared.program, api_key=args.api_key),
                                Limits(args.max_body_bytes, args.body_timeout, args.header_timeout, args.max_concurrent))
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
                                    timeout_graceful_shutdown=5, http=protocol(args.header_timeout))
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            service.close()
    finally:
        sock.close()
    return 0
