"""Gaudi lowering: a saved torch graph per kernel, compiled for the HPU when it is loaded on a Gaudi node.

No public MLIR target exists for Gaudi, so the pipeline does not lower the kernel's MLIR: its one stage reads
which reference-decoder function the kernel is (the `hetagent.function` attribute the exporter puts on it),
traces that function again with `torch.export` and saves the program (`.pt2`, weights still arguments). On a
Gaudi node, `load_for_hpu` moves the graph to the HPU and compiles it with the Habana `torch.compile` backend;
`habana_frameworks` is imported there and only there.
"""

from __future__ import annotations

import io
from pathlib import Path

from hetagent.backend import LoweringPipeline, Stage

from hetagent_gaudi import profiles

BACKEND = "gaudi"
SAVE_TORCH_GRAPH = Stage("torch-export", "python", "hetagent_gaudi.lowering:save_torch_graph")


def pipelines() -> list[LoweringPipeline]:
    return [
        LoweringPipeline(backend=BACKEND, device_kind=profile.name, stages=(SAVE_TORCH_GRAPH,), artifact="pt2")
        for profile in profiles.PROFILES
    ]


def save_torch_graph(module) -> bytes:
    """The python stage: the kernel of a clean module, as the bytes of a saved `torch.export` program."""
    import torch

    from hetagent.backend.functions import export_program, kernel_function

    program = export_program(kernel_function(module))  # another kernel is declined (UnsupportedError)
    program.example_inputs = None  # the trace's meta tensors hold no data and could not be moved to the HPU
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def load_for_hpu(path: str | Path):
    """On a Gaudi node: the saved graph as a callable compiled for the HPU (arguments: inputs, then weights,
    all HPU tensors)."""
    import habana_frameworks.torch  # noqa: F401  (registers the "hpu" device and the "hpu_backend" compiler)
    import torch
    from torch.export.passes import move_to_device_pass

    program = move_to_device_pass(torch.export.load(str(path)), "hpu")
    return torch.compile(program.module(), backend="hpu_backend")
