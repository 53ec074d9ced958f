"""`place`: apply a plan's placement to the agent IR.

Every compute op gets a `placement = {device, backend, replicas, tp, batch}` attribute. The plan names ops by
their `name` label; an entry for a label also covers the parts decompose split it into (`answer` covers
`answer.prefill`, `answer.kv`, `answer.decode`; the longest matching label wins). Ops the plan does not name go
to the plan's default (this node's host device, from the backend that provides it, unless the plan says
otherwise); a `kv.transfer` the plan does not name exactly runs where the decode that reads its cache runs. The
plan (`hetagent.plan`) is `spec/plan-format.md`.

A placement must be one the backend can run: the reference backend (the host device's) runs every op, another
backend an op one of its executors claims on that device, or an op with a model function its lowering pipeline
compiles. When the caller says which devices are present (`present`: `hetagent run` on this node), the placed
device must be one of them. Anything else is an error naming every such op, its device and why — no silent
fallback — unless the caller allows fallback (`--allow-fallback`): then those ops go to the host device and
each fallback is reported.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Callable

from iree.compiler import ir

from hetagent.compiler.shapes import function_for
from hetagent.compiler.pipelines import find_pipeline
from hetagent.errors import HetagentError
from hetagent.ir.optable import OPS
from hetagent.ir.passes import op_id
from hetagent.ir.verifier import verify
from hetagent.backend.registry import Registry
from hetagent.plan import Placement, Plan


def host_placement(registry: Registry) -> Placement:
    """This node's host device, on the backend that provides it (the reference)."""
    host = registry.host
    return Placement(device=host.device, backend=host.backend)


def _resolve(placement: Placement, registry: Registry, where: str) -> Placement:
    """Fill in the backend from the device profile and check both exist and agree."""
    host = registry.host
    if placement.device == host.device and placement.backend in ("", host.backend):
        return replace(placement, backend=host.backend)  # the host is always there: no profile lookup
    loaded = {b.name for b in registry.active()}
    if placement.backend and placement.backend not in loaded:
        raise HetagentError(
            f"{where}: backend {placement.backend!r} is not installed or failed to load (loaded backends: "
            f"{', '.join(sorted(loaded)) or 'none'}); install it with `pip install hetagent-{placement.backend}`"
        )
    try:
        profile = registry.profile(placement.device)
    except HetagentError as exc:
        raise HetagentError(f"{where}: {exc}") from None
    if placement.backend and placement.backend != profile.backend:
        raise HetagentError(f"{where}: device {placement.device!r} belongs to backend {profile.backend!r}, not "
                            f"{placement.backend!r}")
    return replace(placement, backend=profile.backend)


def ops_within(op) -> list:
    """`op` and every op nested in its regions, parents before children."""
    found = [op]
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                found += ops_within(inner.operation)
    return found


def agent_ops(module: ir.Module) -> list:
    """Every op of the module's agent graphs (graphs included; kernel bodies are not walked)."""
    return [op for graph in module.body.operations if graph.operation.name == "agent.graph"
            for op in ops_within(graph.operation)]


def compute_ops(module: ir.Module) -> list:
    """The ops a placement applies to (not graphs, control ops or terminators), in walk order."""
    return [op for op in agent_ops(module) if OPS.get(op.name) is not None and OPS[op.name].level != "structural"]


def label_of(op) -> str | None:
    return op.attributes["name"].value if "name" in op.attributes else None


def _plan_entry(plan: Plan, op) -> tuple[str | None, Placement | None]:
    """The plan key covering `op`: its label (or the label's longest dotted prefix), else its stable id
    (`ir.passes.ids`: how a plan names an unlabelled op, "data.transform#1")."""
    key, placement = plan.entry_for(label_of(op))
    if key is None and op_id(op) in plan.placements:
        key = op_id(op)
        placement = plan.placements[key]
    return key, placement


def _claims(registry: Registry, op, placement: Placement) -> bool:
    if placement.backend == registry.host.backend:
        return True
    if registry.executor_for(placement.backend, placement.device, op.name) is not None:
        return True
    function, _ = function_for(op)
    return function is not None and find_pipeline(registry, placement.backend, placement.device) is not None


def present_devices(registry: Registry) -> set[str]:
    """The device profiles present on this node: the host device and every device a backend detects."""
    return {registry.host.device} | {d.profile for det in registry.detect() if det.available for d in det.devices}


def _absent(registry: Registry, placement: Placement) -> str:
    detection = next((d for d in registry.detect() if d.backend == placement.backend), None)
    if detection is None or not detection.available:
        return f"{placement.backend} is unavailable here: {detection.reason if detection else 'it detects no devices'}"
    return f"{placement.backend} detects only {', '.join(sorted({d.profile for d in detection.devices}))}"


def _problem(registry: Registry, op, placement: Placement, present: set[str] | None) -> str | None:
    """Why `placement` cannot run `op` (on this node, when `present` names its devices), or None."""
    if op.name != "kv.transfer" and not _claims(registry, op, placement):
        return f"no {placement.backend} executor or lowering pipeline claims {op.name} on {placement.device}"
    if present is not None and placement.device not in present:
        return f"device {placement.device} is not present on this node ({_absent(registry, placement)})"
    return None


def _honoured(registry: Registry, op, placement: Placement, source: str, present, problems: list[str] | None) -> Placement:
    """`placement`, or the host device with the reason recorded in `problems` when it cannot run `op` (None:
    record the placement unchecked)."""
    if problems is None:  # recorded as planned (`plan --ir-out`): compile and run check it
        return placement
    what = f"'{label_of(op) or op.name}' ({op.name}, {source})"
    if placement.tp > 1:
        raise HetagentError(f"{what}: tp = {placement.tp}; the compiler builds single-device kernels only "
                            "(tensor-parallel sharding is not implemented): use tp = 1")
    why = _problem(registry, op, placement, present)
    if why is None:
        return placement
    problems.append(f"{what} is placed on {placement.backend}/{placement.device}: {why}")
    return replace(host_placement(registry), replicas=placement.replicas, batch=placement.batch)


def place(
    module: ir.Module,
    plan: Plan | None = None,
    *,
    registry: Registry,
    present: set[str] | None = None,
    allow_fallback: bool = False,
    on_fallback: Callable[[str], None] | None = None,
    check: bool = True,
) -> ir.Module:
    """Set every compute op's placement from `plan` (default: all on the host device), in place; returns the
    module, verified. `present`: this node's devices (`present_devices`), when placements must run here. An op that cannot run where it is placed is an error naming it, unless
    `allow_fallback`: then it goes to the host device and `on_fallback` receives why (default: a warning).
    `check=False` records the plan's placements as they are (a planner's decision written out as IR, `hetagent
    plan --ir-out`): compiling or running that IR checks them."""
    verify(module)
    plan = plan or Plan()
    report = on_fallback or (lambda message: warnings.warn(message, stacklevel=2))
    ops = compute_ops(module)
    covered = {_plan_entry(plan, op)[0] for op in ops}
    unused = [key for key in plan.placements if key not in covered]
    if unused:
        labels = {label_of(op) for op in ops} - {None}
        raise HetagentError(
            f"{plan.source}: no op is labelled {', '.join(repr(u) for u in unused)}; labels in this agent: "
            f"{', '.join(sorted(labels)) or 'none'} (an unlabelled op is named by its id, e.g. "
            f"'{next((op_id(op) for op in ops if label_of(op) is None and op_id(op)), 'data.transform#1')}')"
        )
    default = _resolve(plan.default or host_placement(registry), registry, f"{plan.source}: default")
    resolved = {key: _resolve(p, registry, f"{plan.source}: placements.{key}") for key, p in plan.placements.items()}
    chosen: dict = {}
    transfers = []
    problems: list[str] | None = [] if check else None
    for op in ops:
        key, _ = _plan_entry(plan, op)
        if op.name == "kv.transfer" and key not in {label_of(op), op_id(op)} - {None}:
            transfers.append(op)  # placed with the decode that reads its cache, once that is settled
        else:
            chosen[op] = _honoured(registry, op, resolved[key] if key else default, plan.source, present, problems)
    if problems and not allow_fallback:
        raise HetagentError(f"{len(problems)} op(s) cannot run where they are placed:\n  " + "\n  ".join(problems)
                            + "\n(--allow-fallback runs them on the host device instead, listed in the report)")
    host = host_placement(registry)
    for problem in problems or ():
        report(f"{problem}; it falls back to {host.backend}/{host.device}")
    for op in transfers:
        decode = next((use.owner for use in op.results[0].uses if use.owner.name == "llm.decode"), None)
        chosen[op] = chosen.get(decode, default)
    for op, placement in chosen.items():
        op.attributes["placement"] = placement.as_attribute(module.context)
    return verify(module)
