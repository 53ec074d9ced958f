"""`run_agent`: everything `hetagent run` does, as a function — prepare, start the workers, run, report.

    load (once: resources checked, tiny stand-ins unless weights are given) -> compile (cached; one decompose and
    place) -> program from the compiled agent -> weights -> workers (layout) -> LocalEngine or RayEngine
    .run(requests) -> report (+ OTLP trace)
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hetagent.agent.loader import load_agent
from hetagent.agent.source import stem
from hetagent.compiler.cache import CompileCache, digest
from hetagent.hardware.machine_load import cores, cpu_ticks, load_average, load_warning, steal_since
from hetagent.compiler.driver import CompiledAgent, compile_agent
from hetagent.backend.registry import Registry
from hetagent.compiler.place import present_devices
from hetagent.plan import Plan
from hetagent.errors import HetagentError
from hetagent.hardware.pricebook import PriceBook, default_pricebook
from hetagent.ir import verify
from hetagent.ir.context import location_of
from hetagent.ir.module import to_text
from hetagent.models.catalog import use_model_dir
from hetagent.runtime import report, standins
from hetagent.runtime.engine import Engine, EngineOptions, LocalEngine, Request, RequestRecord
from hetagent.runtime.layout import WorkerPlan, plan_workers
from hetagent.runtime.program import Program, build_program
from hetagent.runtime.otel import otlp_trace
from hetagent.backend.weights import prepare_weights


@dataclass
class Prepared:
    """A compiled agent ready to run: its program, the workers it needs and what was substituted."""

    program: Program
    workers: list[WorkerPlan]
    device_of: dict[int, str]
    substitutions: dict[str, str]
    fallbacks: list[str]
    compiled: CompiledAgent

    def kernels_of(self, worker: WorkerPlan) -> tuple:
        return tuple({k for n in self.program.nodes() for k in (n.kernel, n.extend)
                      if k and worker.runs(n)})


def prepare(agent: str | Path, *, registry: Registry, plan: Plan | None = None, model_dir: Path | None = None,
            model_overrides: dict[str, str] | None = None, cpu_partitions: int = 1, allow_fallback: bool = False,
            cache: CompileCache | None = None, progress=None, local: bool = True,
            resources: Resources | None = None) -> Prepared:
    """Compile `agent` and lay out its workers: on this node, or (`local=False`) on a cluster (RayEngine). On this
    node every placed device must be present, unless `allow_fallback` (then such ops run on the host device).
    The agent is loaded once; `resources`: check the stores and tools it needs are there, before compiling."""
    cache = cache or CompileCache()
    if model_dir is not None:
        use_model_dir(model_dir)  # its checkpoints are models by their directory names
    module = verify(load_agent(agent), what=str(agent))
    if resources is not None:
        check_resources(module, agent, resources)
    named = standins.named_models(module)
    mapping = standins.model_map(named, model_dir, model_overrides or {})
    standins.substitute(module, mapping)
    source = to_text(module)
    work = cache.root / "runs" / f"{stem(agent)}-{digest(source, plan.source if plan else '')[:12]}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "agent.mlir").write_text(source)
    weights = {m: model_dir / m for m in set(mapping.values()) if model_dir and (model_dir / m).is_dir()}
    present = present_devices(registry) if local else None
    compiled = compile_agent(work / "agent.mlir", work / "compiled", module=module, registry=registry, plan=plan,
                             cache=cache, weights=weights, present=present, allow_fallback=allow_fallback,
                             progress=progress)
    program = build_program(compiled)
    for kernel in {n.kernel for n in program.nodes() if n.kernel}:
        prepare_weights(kernel.function["model"], kernel.function["dtype"], model_dir=model_dir, cache_dir=cache.root)
    workers, device_of = plan_workers(program, registry, cpu_partitions=cpu_partitions, local=local)
    substituted = {k: v for k, v in mapping.items() if k != v}
    return Prepared(program, workers, device_of, substituted, compiled.fallbacks, compiled)


def runnable_source(agent: str | Path, *, model_dir: Path | None = None, model_overrides: dict[str, str] | None = None,
                    cache: CompileCache | None = None) -> Path:
    """The agent as `prepare` will run it (tiny stand-ins substituted), written as .mlir: what the planner plans
    when a run plans this host first."""
    cache = cache or CompileCache()
    if model_dir is not None:
        use_model_dir(model_dir)
    module = verify(load_agent(agent), what=str(agent))
    standins.substitute(module, standins.model_map(standins.named_models(module), model_dir, model_overrides or {}))
    source = to_text(module)
    path = cache.root / "runs" / f"{stem(agent)}-{digest(source)[:12]}-planned.mlir"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


@dataclass(frozen=True)
class Resources:
    """What the command line provides for the agent's memory stores and tools (`--store`, `--tool`)."""

    stores: dict[str, str] = field(default_factory=dict)
    http_tools: dict[str, str] = field(default_factory=dict)


def check_resources(module, agent: str | Path, resources: Resources) -> None:
    """Every memory store and tool the agent (`module`, loaded from `agent`) reads must be there before the first
    request, not found missing by each request: raise `HetagentError` naming each missing one and how to
    provide it."""
    from iree.compiler import ir

    from hetagent.backend.tools import python_tools

    stores, http_tools = resources.stores, resources.http_tools
    missing: dict[str, str] = {}

    def visit(op):
        op = op.operation
        attrs = op.attributes
        label = f"'{op.name}' at {location_of(op)}"
        if op.name in ("memory.load", "memory.search") and "store" in attrs:
            store = attrs["store"].value
            if store not in stores:
                missing[f"store {store}"] = (f"memory store {store!r} ({label}) has no index: build one with "
                                             f"`hetagent index DIR -o INDEX` and pass --store {store}=INDEX")
            elif not (Path(stores[store]) / "meta.json").is_file():
                missing[f"store {store}"] = (f"--store {store}={stores[store]}: not an index (no meta.json); build "
                                             f"one with `hetagent index DIR -o {stores[store]}`")
        elif op.name in ("tool.invoke", "tool.lookup", "tool.compute") and "tool" in attrs:
            tool = attrs["tool"].value
            if tool not in http_tools and tool not in python_tools():
                missing[f"tool {tool}"] = (f"tool {tool!r} ({label}) is neither installed (entry-point group "
                                           f"hetagent.tools) nor given as --tool {tool}=URL")
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if missing:
        raise HetagentError(f"{agent}: the agent needs what is not there: " + "; ".join(missing.values()))


@dataclass
class RunResult:
    agent: str
    summary: dict
    ops: list[dict]
    requests: list[dict]
    records: list[RequestRecord]
    substitutions: dict[str, str]
    fallbacks: list[str]
    workers: list[dict]
    transfers: list[dict] = field(default_factory=list)
    trace: dict = field(repr=False, default_factory=dict)
    cost_check: list[dict] = field(default_factory=list)  # predicted vs measured per op kind (report.cost_check)

    def as_json(self) -> dict:
        return {"agent": self.agent, "summary": self.summary, "ops": self.ops, "requests": self.requests,
                "transfers": self.transfers, "substitutions": self.substitutions, "fallbacks": self.fallbacks,
                "workers": self.workers, "cost_check": self.cost_check}


def run_prepared(prepared: Prepared, requests: list[Request], *, registry: Registry, options: EngineOptions,
                 pricebook: PriceBook | None = None, on_finish: Callable[[RequestRecord], None] | None = None,
                 engine_hook: Callable[[Engine], None] | None = None,
                 engine_class: Callable[..., Engine] = LocalEngine) -> RunResult:
    """Start the workers, run the requests, stop the workers, report. `engine_hook(engine)` is called on every
    tick of the run loop (tests use it to kill a worker mid-run; the re-planner to scale pools). `engine_class`:
    LocalEngine, or RayEngine (with its address bound)."""
    with engine_class(prepared.program, prepared.workers, options,
                      kernels_of=prepared.kernels_of) as engine:
        if on_finish:
            engine.on_finish = on_finish
        start, load_start, ticks_start = time.monotonic(), load_average(), cpu_ticks()
        records = engine.run(requests, on_tick=(lambda: engine_hook(engine)) if engine_hook else None)
        wall = time.monotonic() - start
        ops = list(engine.ops)
    load_end, steal = load_average(), steal_since(ticks_start)
    from hetagent.planner.host import worker_model

    model, worker_device = worker_model(registry, prepared.workers, cores())

    usd_per_hour, note = report.fleet_usd_per_hour(prepared.workers, registry, pricebook or default_pricebook())
    return RunResult(
        agent=prepared.program.name,
        summary={**report.summary(records, ops, wall, usd_per_hour, note), "load_average_start": load_start,
                 "load_average_end": load_end,
                 "steal": steal,
                 "load_warning": load_warning(load_start, load_end, "the times and the SLA attainment", steal)},
        ops=report.op_rows(ops),
        requests=report.request_rows(records),
        records=records,
        substitutions=prepared.substitutions,
        fallbacks=prepared.fallbacks,
        workers=[{"name": w.name, "device": w.device, "cores": list(w.cores), "ops": sorted(w.factories)}
                 for w in prepared.workers],
        transfers=report.transfers(ops),
        trace=otlp_trace(options.run_id, prepared.program.name, records, ops),
        cost_check=report.cost_check(prepared.program, ops, records, model, worker_device),
    )


def new_run_id() -> str:
    """Short (shared-memory names are limited) and unique per run."""
    return f"hx{uuid.uuid4().hex[:10]}"
