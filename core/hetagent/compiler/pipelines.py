"""Backend lowering pipelines: finding the one for a device, applying target options, running its stages.

A pipeline (`hetagent.backend.LoweringPipeline`) is an ordered list of named stages, Triton-style: each stage
takes what the previous one produced — an MLIR module, then artifact bytes — and the last must produce bytes.

    mlir    a pass pipeline run on the module with MLIR's pass manager; the module must verify afterwards
    iree    `iree-compile` with the stage's flags ({option} placeholders filled from the target options)
    python  "module:function", called with the module or bytes, returning a module or bytes
"""

from __future__ import annotations

import dataclasses
import importlib
import shlex
import threading

from iree.compiler import ir, passmanager

from hetagent.errors import HetagentError
from hetagent.ir.module import to_bytecode
from hetagent.backend.records import LoweringPipeline, Stage
from hetagent.backend.registry import Registry

# Python stages (a torch export, a vendor tool) need not be thread-safe: run them one at a time.
_PYTHON_STAGE_LOCK = threading.Lock()


def find_pipeline(registry: Registry, backend: str, device: str) -> LoweringPipeline | None:
    """The backend's pipeline for this device profile, else for the profile's kind; None if it has neither."""
    mine = [p for p in registry.lowering_pipelines() if p.backend == backend]
    for pipeline in mine:
        if pipeline.device_kind == device:
            return pipeline
    if not mine:
        return None
    kind = registry.profile(device).kind
    return next((p for p in mine if p.device_kind == kind), None)


def with_target_options(pipeline: LoweringPipeline, overrides: dict[str, str]) -> LoweringPipeline:
    """The pipeline with some target options replaced; an option it does not declare is an error."""
    unknown = set(overrides) - set(pipeline.target_options)
    if unknown:
        valid = ", ".join(f"{k} (default {v!r})" for k, v in pipeline.target_options.items()) or "none"
        raise HetagentError(
            f"unknown target option(s) {', '.join(sorted(unknown))} for the {pipeline.backend}/"
            f"{pipeline.device_kind} pipeline; valid options: {valid}"
        )
    return dataclasses.replace(pipeline, target_options={**pipeline.target_options, **overrides})


def describe(pipeline: LoweringPipeline) -> dict:
    """What the manifest records about a pipeline."""
    return {
        "backend": pipeline.backend,
        "device_kind": pipeline.device_kind,
        "hash": pipeline.hash(),
        "stages": [stage.name for stage in pipeline.stages],
        "target_options": dict(pipeline.target_options),
        "artifact": pipeline.artifact,
    }


def run_pipeline(pipeline: LoweringPipeline, module: ir.Module, what: str, on_stage=None) -> bytes:
    """Run every stage on `module` (which the caller owns: mlir stages change it); returns the artifact.
    `on_stage(stage, value)` sees what each stage produced (the conformance suite verifies it)."""
    value: ir.Module | bytes = module
    for stage in pipeline.stages:
        where = f"{what}: stage {stage.name!r} ({stage.kind}) of the {pipeline.backend}/{pipeline.device_kind} pipeline"
        value = _STAGE_RUNNERS[stage.kind](stage, value, pipeline, where)
        if not isinstance(value, (ir.Module, bytes)):
            raise HetagentError(f"{where} returned {type(value).__name__}; a stage returns an MLIR module or bytes")
        if on_stage:
            on_stage(stage, value)
    if not isinstance(value, bytes):
        raise HetagentError(f"{what}: the {pipeline.backend}/{pipeline.device_kind} pipeline ends with an MLIR "
                            "module, not an artifact: its last stage must produce bytes")
    return value


def _module_input(value, where: str) -> ir.Module:
    if not isinstance(value, ir.Module):
        raise HetagentError(f"{where} needs an MLIR module, but an earlier stage already produced the artifact")
    return value


def _run_mlir(stage: Stage, value, pipeline: LoweringPipeline, where: str):
    module = _module_input(value, where)
    try:
        with module.context:
            passmanager.PassManager.parse(stage.action).run(module.operation)
        module.operation.verify()
    except ir.MLIRError as exc:
        raise HetagentError(f"{where} failed: {_first_lines(str(exc))}") from None
    return module


def _run_iree(stage: Stage, value, pipeline: LoweringPipeline, where: str):
    from iree.compiler import CompilerToolError, compile_str

    module = _module_input(value, where)
    flags = shlex.split(stage.action.format(**pipeline.target_options))
    try:
        return compile_str(to_bytecode(module), extra_args=flags)
    except CompilerToolError as exc:
        options = ", ".join(f"{k}={v}" for k, v in pipeline.target_options.items())
        raise HetagentError(f"{where} failed (target options: {options}): {_first_lines(str(exc))}") from None


def _run_python(stage: Stage, value, pipeline: LoweringPipeline, where: str):
    module_name, _, attribute = stage.action.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise HetagentError(f"{where}: cannot load {stage.action}: {exc}") from None
    with _PYTHON_STAGE_LOCK:
        return function(value)


def _first_lines(text: str, count: int = 8) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:count]) + ("\n..." if len(lines) > count else "")


_STAGE_RUNNERS = {"mlir": _run_mlir, "iree": _run_iree, "python": _run_python}
