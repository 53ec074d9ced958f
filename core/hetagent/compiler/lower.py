"""`lower`: hand every compute kernel of a module to the lowering pipeline of the device it is placed on.

For each (kernel, device) pair the ops of the module ask for, the kernel's func.func (and any function it
calls) is printed into a clean module — no agent ops, no source locations — because `iree-compile` crashes on
the unregistered `agent.*` ops and locations would make artifacts depend on where the source was checked out.
That text is the function's identity: its hash, with the pipeline's hash (which covers the target options)
and the compiler version, keys the artifact cache. Misses compile in parallel, each in its own MLIR context.

The module is returned with each kernel annotated: `hetagent.artifacts = {<device> = {key, sha256, format,
pipeline}}`, where `key` finds the artifact in the cache.
"""

from __future__ import annotations

import importlib.metadata
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from iree.compiler import ir

from hetagent.compiler.cache import CompileCache, digest
from hetagent.compiler.pipelines import find_pipeline, run_pipeline, with_target_options
from hetagent.compiler.shapes import kernel_symbols
from hetagent.compiler.place import compute_ops
from hetagent.plan import Placement
from hetagent.errors import HetagentError
from hetagent.ir.module import functions, new_context, parse, to_text
from hetagent.ir.optable import is_agent_op
from hetagent.ir.verifier import verify
from hetagent.backend.records import LoweringPipeline
from hetagent.backend.registry import Registry

ARTIFACTS_ATTR = "hetagent.artifacts"
_COMPILER_VERSION = importlib.metadata.version("iree-base-compiler")


@dataclass(frozen=True)
class Job:
    """One kernel to build for one device."""

    symbol: str
    device: str
    pipeline: LoweringPipeline
    source: str  # the clean module's text
    key: str  # artifact-cache key

    @property
    def what(self) -> str:
        return f"kernel @{self.symbol} for {self.pipeline.backend}/{self.device}"


def functions_needed(module: ir.Module, symbols) -> list[str]:
    """The named functions and every function they call, transitively; a missing one is an error."""
    by_name = functions(module)
    needed, pending = [], list(symbols)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        if name not in by_name:
            raise HetagentError(f"@{name} is no func.func in the module (a kernel, or a function a kernel calls)")
        needed.append(name)

        def visit(op):
            if op.operation.name == "func.call":
                pending.append(op.operation.attributes["callee"].value)
            return ir.WalkResult.ADVANCE

        by_name[name].walk(visit)
    return needed


def clean_module_text(module: ir.Module, symbol: str) -> str:
    """The kernel `symbol` and the functions it calls, alone in a module, as text without locations; an agent op
    anywhere in them is an error that names it."""
    by_name = functions(module)
    needed = functions_needed(module, [symbol])
    with module.context:
        clean = ir.Module.create(loc=ir.Location.unknown())
    for name in needed:
        copy = by_name[name].clone()
        if ARTIFACTS_ATTR in copy.attributes:  # the result of lowering, not part of what is lowered
            del copy.attributes[ARTIFACTS_ATTR]
        clean.body.append(copy)
    agent_ops: list[str] = []

    def visit(op):
        if is_agent_op(op.operation.name):
            agent_ops.append(f"'{op.operation.name}' at {op.operation.location}")
        return ir.WalkResult.ADVANCE

    clean.operation.walk(visit)
    if agent_ops:
        raise HetagentError(
            f"kernel @{symbol} contains agent op(s) {', '.join(agent_ops)}: a kernel must be plain tensor code "
            "(linalg, torch, arith...) because iree-compile cannot compile agent ops; move them into the agent graph"
        )
    return to_text(clean)


def artifact_key(source: str, pipeline: LoweringPipeline) -> str:
    """The artifact-cache key of a clean module's text built by `pipeline` (`spec/compiler.md`, section 5)."""
    return digest(digest(source), pipeline.hash(), _COMPILER_VERSION)


def _jobs(module: ir.Module, registry: Registry, cache: CompileCache, target_options: dict[str, dict[str, str]]) -> list[Job]:
    jobs: dict[tuple[str, str], Job] = {}
    for op in compute_ops(module):
        placement = Placement.of(op)
        if placement is None:
            continue
        for symbol in kernel_symbols(op):
            if (symbol, placement.device) in jobs:
                continue
            pipeline = find_pipeline(registry, placement.backend, placement.device)
            if pipeline is None:
                raise HetagentError(f"backend {placement.backend!r} has no lowering pipeline for device "
                                    f"{placement.device!r}, where kernel @{symbol} is placed")
            pipeline = with_target_options(pipeline, target_options.get(placement.backend, {}))
            source = clean_module_text(module, symbol)
            jobs[(symbol, placement.device)] = Job(symbol, placement.device, pipeline, source,
                                                   artifact_key(source, pipeline))
    return list(jobs.values())


def _build(job: Job) -> bytes:
    """Run the job's pipeline on a fresh context (contexts are not shared between threads)."""
    return run_pipeline(job.pipeline, parse(job.source, context=new_context()), job.what)


def lower(
    module: ir.Module,
    *,
    registry: Registry,
    cache: CompileCache,
    target_options: dict[str, dict[str, str]] | None = None,
    on_built: Callable[[Job, bool], None] | None = None,
    workers: int | None = None,
) -> ir.Module:
    """Build every kernel the module's placed ops use (through the cache) and annotate it; returns the module,
    verified. `target_options` overrides options per backend (`{"cuda": {"target": "sm_80"}}`); `on_built`
    is called per job with whether it came from the cache."""
    verify(module)
    jobs = _jobs(module, registry, cache, target_options or {})
    misses = [job for job in jobs if cache.get("artifacts", job.key, job.pipeline.artifact) is None]
    for job in jobs:
        if job not in misses and on_built:
            on_built(job, True)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for job, artifact in zip(misses, pool.map(_build, misses)):
            cache.put("artifacts", job.key, job.pipeline.artifact, artifact)
            if on_built:
                on_built(job, False)
    _annotate(module, jobs, cache)
    return verify(module)


def _annotate(module: ir.Module, jobs: list[Job], cache: CompileCache) -> None:
    by_name = functions(module)
    by_symbol: dict[str, dict[str, ir.Attribute]] = {}
    with module.context:
        for job in jobs:
            by_symbol.setdefault(job.symbol, {})[job.device] = ir.DictAttr.get({
                "key": ir.StringAttr.get(job.key),
                "sha256": ir.StringAttr.get(cache.recorded_sha256("artifacts", job.key, job.pipeline.artifact)),
                "format": ir.StringAttr.get(job.pipeline.artifact),
                "pipeline": ir.StringAttr.get(job.pipeline.hash()),
            })
        for symbol, devices in by_symbol.items():
            by_name[symbol].attributes[ARTIFACTS_ATTR] = ir.DictAttr.get(devices)
