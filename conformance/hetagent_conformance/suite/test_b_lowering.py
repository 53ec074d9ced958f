"""Tier b — lowering (`spec/compiler.md`): every stage's output verifies, an artifact is deterministic for its
cache key, and every declared target cross-compiles (no device needed). The kernel is a reference-decoder
function, the kind of kernel the compiler hands every pipeline."""

from __future__ import annotations

import time

import pytest
from iree.compiler import ir

from hetagent.compiler.lower import artifact_key
from hetagent.compiler.pipelines import run_pipeline
from hetagent.errors import UnsupportedError
from hetagent.ir.module import new_context, parse
from hetagent.ir.optable import is_agent_op

from hetagent_conformance.kernels import clean_source, model_function
from hetagent_conformance.subject import unsupported

# what the first bytes of each artifact kind are (IREE VM modules and saved torch programs are zip archives)
MAGIC = {"vmfb": b"PK\x03\x04", "pt2": b"PK\x03\x04"}
KERNEL = model_function("decode", "fp32", capacity=64)


def _targets(backend) -> list:
    """One pipeline per distinct build (profiles sharing stages and options build the same bytes)."""
    distinct = {}
    for pipeline in backend.registry.lowering_pipelines():
        distinct.setdefault((pipeline.stages, tuple(sorted(pipeline.target_options.items())), pipeline.artifact,
                             pipeline.version), pipeline)
    if not distinct:
        unsupported("declares no lowering pipeline")
    return list(distinct.values())


def _build(pipeline, on_stage=None) -> tuple[bytes, float]:
    start = time.perf_counter()
    try:
        artifact = run_pipeline(pipeline, parse(clean_source(KERNEL), context=new_context()),
                                f"kernel @{KERNEL.symbol}", on_stage)
    except UnsupportedError as exc:
        unsupported(str(exc))
    return artifact, time.perf_counter() - start


def _check_artifact(pipeline, artifact: bytes) -> str | None:
    magic = MAGIC.get(pipeline.artifact, b"")
    if not artifact:
        return f"{pipeline.device_kind}: empty artifact"
    if not artifact.startswith(magic):
        return f"{pipeline.device_kind}: not a .{pipeline.artifact} (starts {artifact[:8]!r})"
    return None


@pytest.fixture(scope="session")
def first_build(backend):
    """The first target's artifact, stage by stage: (pipeline, artifact, problems, stage seconds)."""
    pipeline = _targets(backend)[0]
    problems, stages, last = [], {}, [time.perf_counter()]

    def on_stage(stage, value):
        now = time.perf_counter()
        stages[stage.name] = round(now - last[0], 3)
        last[0] = now
        if isinstance(value, bytes):
            return
        if not value.operation.verify():
            problems.append(f"stage {stage.name!r}: the module does not verify")
        agent_ops = []

        def visit(op):
            if is_agent_op(op.operation.name):
                agent_ops.append(op.operation.name)
            return ir.WalkResult.ADVANCE

        value.operation.walk(visit)
        if agent_ops:
            problems.append(f"stage {stage.name!r}: agent ops {sorted(set(agent_ops))} in a kernel")

    artifact, seconds = _build(pipeline, on_stage)
    backend.compiles.append({"kernel": KERNEL.symbol, "device": pipeline.device_kind, "seconds": round(seconds, 3),
                             "cache": "bypassed", "stages": stages})
    return pipeline, artifact, problems, stages


def test_every_stage_output_verifies(first_build, record_property):
    pipeline, artifact, problems, stages = first_build
    record_property("compile_s", stages)
    assert not problems, "; ".join(problems)
    problem = _check_artifact(pipeline, artifact)
    assert problem is None, problem


def test_artifacts_are_deterministic(backend, first_build, record_property):
    pipeline, artifact, _, _ = first_build
    again, seconds = _build(pipeline)  # a fresh MLIR context, no cache
    record_property("compile_s", round(seconds, 3))
    key = artifact_key(clean_source(KERNEL), pipeline)
    assert again == artifact, (f"two builds of the same kernel and pipeline (cache key {key[:16]}) differ: "
                               f"{len(artifact)} vs {len(again)} bytes")


def test_every_declared_target_builds(backend, first_build, record_property):
    times, problems = {}, []
    for pipeline in _targets(backend)[1:]:  # the first one is first_build's
        options = ",".join(f"{k}={v}" for k, v in pipeline.target_options.items()) or "no options"
        try:
            artifact, seconds = _build(pipeline)
        except pytest.skip.Exception:
            continue  # a target that declines this kernel
        except Exception as exc:
            problems.append(f"{pipeline.device_kind} ({options}): {type(exc).__name__}: {str(exc)[:300]}")
            continue
        times[f"{pipeline.device_kind} ({options})"] = round(seconds, 3)
        problem = _check_artifact(pipeline, artifact)
        if problem:
            problems.append(problem)
    record_property("compile_s", times)
    assert not problems, "; ".join(problems)
