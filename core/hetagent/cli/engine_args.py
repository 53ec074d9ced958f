"""What `hetagent run` and `hetagent serve` share: how an agent is compiled and placed, and the engine that runs it.

One definition of the options, their checks and the `EngineOptions` they become, so the two commands cannot drift.
"""

from __future__ import annotations

from pathlib import Path

from hetagent.cli import limits
from hetagent.cli.compile_command import _pairs
from hetagent.cli.output import console
from hetagent.errors import HetagentError


AGENT_FORMS = "an agent: .mlir/.mlirbc, path/file.py:NAME or package.module:NAME (an @agent function or a LangGraph graph)"


def checkout_path(relative: str) -> Path:
    """A path in the working directory, else in the checkout hetagent is installed from (editable install)."""
    here = Path(relative)
    if here.exists():
        return here
    return Path(__file__).resolve().parents[3] / relative


def progress(quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.fields[stage]}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    return Progress(*columns, console=console, transient=True, disable=quiet)


def add_engine_arguments(p) -> None:
    p.add_argument("--plan", type=Path, help="a plan (JSON, spec/plan-format.md); default: everything on the host CPU")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this node; ray: actors on a Ray cluster (needs hetagent[ray])")
    p.add_argument("--address", help="with --engine ray: the cluster to join ('auto': the one `ray start` made "
                   "here; default: start a local one)")
    p.add_argument("--model-dir", type=Path, help="DIR/<model>/*.safetensors: real weights for those models")
    p.add_argument("--model-map", action="append", default=[], metavar="FROM=TO",
                   help="run model TO where the agent names FROM (default: tiny stand-ins for models without weights)")
    p.add_argument("--cpu-partitions", type=limits.number(1, 1024, integer=True), metavar="N",
                   help="split the host's cores into N pinned CPU workers (N >= 2: prefill and decode apart; "
                   "default 1, or, for `hetagent run` planning this host, 2)")
    p.add_argument("--allow-fallback", action="store_true",
                   help="run an op whose placed device is absent here, or whose backend cannot run it, on the host "
                   "device (each listed in the report) instead of refusing to start")
    p.add_argument("--temperature", type=limits.number(0, 100), default=0.0, help="sampling temperature (0: greedy)")
    p.add_argument("--store", action="append", default=[], metavar="NAME=INDEX", help="a memory store's index")
    p.add_argument("--tool", action="append", default=[], metavar="NAME=URL", help="an HTTP tool (POST JSON)")
    p.add_argument("--corpus", type=Path, help="the corpus web_search reads (default examples/corpus)")
    p.add_argument("--pricebook", type=Path, help="price book (TOML) for $/request (default: the paper's)")
    p.add_argument("--max-inflight", type=limits.number(1, 1_000_000, integer=True), default=64,
                   help="admission control: requests in flight at most (more are rejected; 429 when serving)")
    p.add_argument("--admission", choices=("sla", "limit"), default="sla",
                   help="sla: also reject requests predicted to miss the SLA (503 when serving); limit: only "
                   "--max-inflight")
    p.add_argument("--prefix-cache-mb", type=limits.number(0, 1_000_000), default=256.0, metavar="MB",
                   help="KV of recent prompt prefixes each prefill worker keeps and reuses (0: no prefix cache)")
    p.add_argument("--sla-ms", type=limits.MILLISECONDS, help="end-to-end SLA of every request (default: the agent's sla_ms)")


def engine_class(args):
    """The engine `--engine` / `--address` pick; bad combinations are errors before anything is compiled."""
    from functools import partial

    from hetagent.runtime.layout import check_partitions

    check_partitions(args.cpu_partitions or 1)
    if args.max_inflight < 1:
        raise HetagentError(f"--max-inflight {args.max_inflight}: must be >= 1")
    if args.sla_ms is not None and args.sla_ms <= 0:
        raise HetagentError(f"--sla-ms {args.sla_ms}: must be > 0")
    if args.model_dir and not args.model_dir.is_dir():
        raise HetagentError(f"--model-dir {args.model_dir}: not a directory")
    if args.engine == "local":
        if args.address:
            raise HetagentError("--address names a Ray cluster to join: use it with --engine ray")
        from hetagent.runtime.engine import LocalEngine

        return LocalEngine
    from hetagent.runtime.ray_engine import RayEngine, import_ray

    import_ray()  # "install hetagent[ray]" when missing
    return partial(RayEngine, address=args.address)


def prepare_agent(agent: str | Path, args, *, registry, cache, on_progress=None, plan=None):
    """Compile (cached) and lay out `agent` as the options say (`plan`: one made here, else --plan's): on this
    node, or (Ray) across a cluster."""
    from hetagent.plan import Plan
    from hetagent.runtime.run import prepare

    plan = plan or (Plan.load(args.plan) if args.plan else None)
    return prepare(agent, registry=registry, plan=plan,
                   model_dir=args.model_dir, model_overrides=dict(_pairs(args.model_map, "--model-map", "FROM=TO")),
                   cpu_partitions=args.cpu_partitions or 1, allow_fallback=args.allow_fallback, cache=cache,
                   progress=on_progress, local=args.engine == "local", resources=resources(args))


def resources(args):
    """The stores and tools the options give (`--store`, `--tool`): `prepare` checks the agent needs no other,
    so a missing one exits 2 at start-up, named."""
    from hetagent.runtime.run import Resources

    return Resources(dict(_pairs(args.store, "--store", "NAME=INDEX")), dict(_pairs(args.tool, "--tool", "NAME=URL")))


def engine_options(args, cache):
    from hetagent.runtime.engine import EngineOptions
    from hetagent.runtime.run import new_run_id

    return EngineOptions(
        run_id=new_run_id(), cache_dir=str(cache.root), model_dir=str(args.model_dir) if args.model_dir else None,
        corpus=str(args.corpus or checkout_path("examples/corpus")),
        stores=dict(_pairs(args.store, "--store", "NAME=INDEX")),
        http_tools=dict(_pairs(args.tool, "--tool", "NAME=URL")), temperature=args.temperature,
        max_inflight=args.max_inflight, admission=args.admission, sla_ms=args.sla_ms,
        prefix_cache_mb=args.prefix_cache_mb,
    )
