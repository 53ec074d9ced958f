"""`compile_agent`: an agent file in, a `CompiledAgent` out — per-backend artifacts and a manifest on disk, and the
placed module the runtime builds its program from (`hetagent compile`, `hetagent run`, `hetagent serve`).

    load, verify, decompose, assign_ids -> place -> attach_kernels -> partition -> lower (each partition)

Each pass runs once per compile; a warm cache makes exporting and lowering cache hits (`CompileCache`), never a
second pass over the agent. Ops are named by their `id` (`hetagent.ir.passes.ids`) in the module, the manifest
and everything the runtime reports.

The output directory holds, per backend, the partition module (`<backend>.mlir`) and its artifacts
(`<backend>/<kernel>.<device>.<ext>`), and `manifest.json`: which op runs where, every kernel with its
signature, artifact file, SHA-256, function and pipeline hashes and target options, the transfers between
partitions, and what fell back or got no kernel and why. `spec/compiler.md` describes the format.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from iree.compiler import ir

from hetagent.agent import load_agent
from hetagent.compiler.cache import CompileCache, digest
from hetagent.compiler.shapes import ModelFunction
from hetagent.compiler.export import FUNCTION_ATTR, installed_version
from hetagent.compiler.attach import attach_kernels, kernel_notes, wanted_functions
from hetagent.compiler.lower import ARTIFACTS_ATTR, Job, lower
from hetagent.compiler.partition import partition
from hetagent.compiler.pipelines import describe
from hetagent.compiler.place import compute_ops, label_of, place
from hetagent.plan import Placement, Plan
from hetagent.errors import HetagentError
from hetagent.ir import decompose, verify
from hetagent.ir.passes import assign_ids, op_id
from hetagent.ir.module import functions, to_text
from hetagent.models.catalog import card, use_checkpoint
from hetagent.models.weight_names import locate_weights, weight_shapes
from hetagent.backend.registry import Registry

MANIFEST_FORMAT = 1

# progress(description, advance, total): `total` is fixed before the first advance.
Progress = Callable[[str, int, int], None]


@dataclass
class CompiledAgent:
    """What `compile_agent` built: the placed, decomposed module (ids and kernels attached), the manifest, and the
    directory holding the artifacts the manifest names. The runtime builds its program from it as is."""

    module: ir.Module
    manifest: dict
    out_dir: Path

    @property
    def fallbacks(self) -> list[str]:
        return self.manifest["fallbacks"]

    def kernel(self, symbol: str, device: str) -> dict | None:
        """The manifest's entry for kernel `symbol` built for `device`, or None."""
        return next((k for k in self.manifest["kernels"] if k["symbol"] == symbol and k["device"] == device), None)

    def artifact(self, entry: dict) -> Path:
        return (self.out_dir / entry["artifact"]["file"]).resolve()


def compile_agent(
    agent: str | Path,
    out_dir: str | Path,
    *,
    registry: Registry,
    module: ir.Module | None = None,
    plan: Plan | None = None,
    cache: CompileCache | None = None,
    target_options: dict[str, dict[str, str]] | None = None,
    weights: dict[str, str | Path] | None = None,
    present: set[str] | None = None,
    allow_fallback: bool = False,
    progress: Progress | None = None,
) -> CompiledAgent:
    """Compile `agent` into `out_dir` (the manifest is also written as `manifest.json`). `module`: the agent
    already loaded (the runtime loads it once, to check its resources and substitute models), compiled in place;
    else it is loaded from `agent`. `present`: place for this node's devices (`hetagent run`); `allow_fallback`:
    ops that cannot run where placed go to the host device (listed in the manifest's `fallbacks`) instead of
    being an error."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HetagentError(f"{out}: exists and is not a directory (-o names the output directory)")
    cache = cache or CompileCache()
    report = progress or (lambda description, advance, total: None)
    module = assign_ids(decompose(verify(module if module is not None else load_agent(agent), what=str(agent))))
    fallbacks: list[str] = []
    place(module, plan, registry=registry, present=present, allow_fallback=allow_fallback,
          on_fallback=fallbacks.append)
    checked_weights = _check_weights(weights or {})  # first: a checkpoint's card decides its kernels

    wanted = wanted_functions(module)
    exports = {fn.symbol for _, _, fn in wanted}
    jobs = {(fn.symbol, Placement.of(op).device) for op, _, fn in wanted}
    total = len(exports) + len(jobs)
    report("placed", 0, total)
    attach_kernels(module, cache=cache, on_exported=lambda fn: report(f"exported {fn.symbol}", 1, total))
    notes = kernel_notes(module)
    ops = [_op_entry(op, notes.get(op)) for op in compute_ops(module)]

    built: dict[tuple[str, str], tuple[Job, bool]] = {}

    def on_built(job: Job, hit: bool) -> None:
        built[(job.symbol, job.device)] = (job, hit)
        report(f"{'cached' if hit else 'built'} {job.symbol} for {job.device}", 1, total)

    partitions = partition(module)
    for part in partitions.values():
        lower(part, registry=registry, cache=cache, target_options=target_options, on_built=on_built)

    out.mkdir(parents=True, exist_ok=True)
    kernels = []
    for backend, part in partitions.items():
        (out / f"{backend}.mlir").write_text(to_text(part))
        for symbol, func in functions(part).items():
            for device, artifact in _entries(func.attributes[ARTIFACTS_ATTR]):
                job, hit = built[(symbol, device)]
                kernels.append(_kernel_entry(out, backend, func, artifact, job, hit, cache))
    manifest = {
        "format": MANIFEST_FORMAT,
        "agent": str(agent),
        "plan": plan.source if plan else Plan().source,
        "versions": {name: installed_version(name) for name in ("hetagent", "iree-base-compiler", "torch")},
        "partitions": {backend: f"{backend}.mlir" for backend in partitions},
        "ops": ops,
        "kernels": kernels,
        "transfers": _transfers(partitions),
        "fallbacks": fallbacks,
        "weights": checked_weights,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return CompiledAgent(module, manifest, out)


def _check_weights(weights: dict[str, str | Path]) -> dict[str, str]:
    """Each model's checkpoint directory, checked tensor by tensor against its card (a Hugging Face
    directory's own card: its config.json, under the model's name)."""
    for model, directory in weights.items():
        if (Path(directory) / "config.json").is_file():
            use_checkpoint(model, directory)
        locate_weights(card(model), directory)
    return {model: str(Path(directory).resolve()) for model, directory in weights.items()}


def _op_entry(op, note: str | None) -> dict:
    placement = Placement.of(op)
    entry = {
        "id": op_id(op),
        "op": op.name,
        "name": label_of(op),
        "backend": placement.backend,
        "device": placement.device,
        "kernel": op.attributes["kernel"].value if "kernel" in op.attributes else None,
    }
    if "extend_kernel" in op.attributes:
        entry["extend_kernel"] = op.attributes["extend_kernel"].value
    if note:
        entry["no_kernel"] = note
    return entry


def _entries(attr) -> list[tuple[str, dict]]:
    return [(attr[i].name, attr[i].attr) for i in range(len(attr))]


def _kernel_entry(out: Path, backend: str, func, artifact, job: Job, hit: bool, cache: CompileCache) -> dict:
    extension = job.pipeline.artifact
    relative = Path(backend) / f"{job.symbol}.{job.device}.{extension}"
    (out / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cache.path("artifacts", job.key, extension), out / relative)
    entry = {
        "symbol": job.symbol,
        "backend": backend,
        "device": job.device,
        "artifact": {
            "file": str(relative),
            "format": extension,
            "bytes": (out / relative).stat().st_size,
            "sha256": artifact["sha256"].value,
        },
        "function_hash": digest(job.source),
        "pipeline": describe(job.pipeline),
        "cache": "hit" if hit else "miss",
    }
    if FUNCTION_ATTR in func.attributes:
        fn = ModelFunction.from_attribute(func.attributes[FUNCTION_ATTR])
        model = card(fn.model)
        entry["function"] = dataclasses.asdict(fn)
        # after the inputs, the kernel takes every weight of the model in weight_shapes order (spec/compiler.md)
        entry["signature"] = {**fn.signature(model), "weights": list(weight_shapes(model))}
    return entry


def _transfers(partitions: dict) -> list[dict]:
    transfers = []
    for backend, part in partitions.items():
        for op in compute_ops(part):
            if op.name == "xfer.send":
                attrs = op.attributes
                transfers.append({
                    "channel": attrs["channel"].value,
                    "payload": attrs["payload"].value,
                    "from": backend,
                    "to": attrs["peer"].value,
                })
    return sorted(transfers, key=lambda t: int(t["channel"][1:]))


