"""What `hetagent calibrate --backend cpu` times on the host (the `calibrate` hook of the cpu backend).

Numpy float32 on the host's BLAS (`numpy_layers`): every kernel of one transformer layer for a ladder of model
widths, as prefills of several lengths (GEMMs of many shapes, compute-bound) and as decode steps of small
batches (GEMVs, memory-bound), each alone, best of repeats. A decode step's weight kernels are timed twice: with a
cold cache, as inside the forward pass of a model larger than the last-level cache (every weight streams from
memory), and warm (`Kernel.cached`), as inside one of a model that stays in the cache between steps: on a host
with a 480 MiB L3, a 14 MB model's decode step ran 2-3x faster than its cold kernels predicted;
attention gets its own compute curve (numpy's softmax makes it far slower than a GEMM of its FLOPs). Then a
small transformer's whole prefill and decode steps, timed end to end: the core fits the curves from the kernels
and checks them against these passes.
"""

from __future__ import annotations

import platform
import socket
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hetagent.backend import CalibrationRun, Measurement, PassMeasurement
from hetagent.models.card import ModelCard

from hetagent_cpu.numpy_layers import DTYPE, NumpyLayers


@dataclass(frozen=True)
class Ladder:
    widths: tuple[int, ...]  # hidden sizes of the layer ladder
    prefill_tokens: tuple[int, ...]
    decode_batches: tuple[int, ...]
    decode_context: int
    layer_flops_limit: float  # skip (width, tokens) whose layer needs more FLOPs than this: keeps the run short
    min_seconds: float  # time each kernel at least this long in total ...
    max_repeats: int  # ... or this many times
    check_layers: int
    check_width: int
    check_tokens: int


FULL = Ladder((256, 512, 1024, 2048), (8, 32, 128, 512), (1, 4, 16), 256, 6e9, 0.04, 25, 4, 1024, 256)
QUICK = Ladder((256, 1024), (16, 128), (1, 8), 128, 1.5e9, 0.01, 5, 2, 512, 128)


def layer_card(width: int, layers: int = 1) -> ModelCard:
    """A Llama-3-shaped card of the given width: head 64, GQA 4:1, SwiGLU at 2.75× the width."""
    heads = max(width // 64, 4)
    return ModelCard(
        name=f"calibration-{width}", kind="llm", hidden_size=width, intermediate_size=width * 11 // 4,
        num_layers=layers, num_heads=heads, num_kv_heads=heads // 4, vocab_size=8192, default_dtype=DTYPE,
        source="hetagent calibrate: synthetic layer",
    )


def time_call(fn: Callable[[], object], ladder: Ladder, before: Callable[[], object] | None = None) -> float:
    """Best of repeated calls after one warm-up call: the least disturbed by whatever else shares the cores.
    `before` runs untimed ahead of each call (to evict the cache)."""
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < 3 or (spent < ladder.min_seconds and len(times) < ladder.max_repeats):
        if before:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return min(times)


LLC_SIZE = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")


def last_level_cache_bytes() -> int:
    """The last-level cache as the OS reports it ("491520K"); 32 MiB when it does not say."""
    text = LLC_SIZE.read_text().strip().upper() if LLC_SIZE.is_file() else ""
    units = {"K": 1 << 10, "M": 1 << 20}
    if text[-1:] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    return 32 << 20


def cache_evictor() -> Callable[[], object]:
    """Writes twice the last-level cache: what a cold kernel reads then comes from memory, as a weight does
    inside the decode step of a model larger than the cache."""
    import numpy as np

    scratch = np.empty(2 * last_level_cache_bytes() // 4, dtype=np.float32)
    return lambda: scratch.fill(1.0)


def run(backend: str, device: str, kind: str, *, quick: bool,
        progress: Callable[[int, int, str], None] | None) -> CalibrationRun:
    import numpy as np

    ladder = QUICK if quick else FULL
    steps = _steps(ladder)
    evict = cache_evictor()
    measurements: list[Measurement] = []
    for done, (label, layers, phase, tokens, batch) in enumerate(steps):
        if progress:
            progress(done, len(steps) + 1, label)
        for kernel, fn in layers.launches(phase, tokens, batch):
            weights = phase == "decode" and kernel.kind in ("matmul", "matvec")
            if weights:  # warm first, its operands left in the cache by the call before; the kernels after a
                # weight kernel are timed after its cold timing, as they always were (an evicted cache slows them)
                measurements.append(Measurement(dataclasses.replace(kernel, cached=True), DTYPE, time_call(fn, ladder)))
            measurements.append(Measurement(kernel, DTYPE, time_call(fn, ladder, before=evict if weights else None)))
    if progress:
        progress(len(steps), len(steps) + 1, "timing a small transformer end to end")
    checks = _checks(ladder)
    if progress:
        progress(len(steps) + 1, len(steps) + 1, "done")
    return CalibrationRun(
        backend=backend, device=device, kind=kind, dtype=DTYPE, measurements=tuple(measurements), checks=checks,
        cache_bytes=last_level_cache_bytes(),
        source=f"hetagent calibrate --backend {backend}{' --quick' if quick else ''} on {socket.gethostname()}",
        host={"numpy": np.__version__, "python": platform.python_version(),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": quick},
    )


def _steps(ladder: Ladder) -> list[tuple[str, NumpyLayers, str, int, int]]:
    steps = []
    for width in ladder.widths:
        layers = NumpyLayers(layer_card(width))
        per_token = 2 * layers.card.decoder_layer_params()
        for tokens in ladder.prefill_tokens:
            if per_token * tokens <= ladder.layer_flops_limit:
                steps.append((f"width {width}, prefill {tokens} tokens", layers, "prefill", tokens, 1))
        for batch in ladder.decode_batches:
            steps.append((f"width {width}, decode batch {batch}", layers, "decode", ladder.decode_context, batch))
    return steps


def _checks(ladder: Ladder) -> tuple[PassMeasurement, ...]:
    """A small transformer's prefill and decode steps, each timed as a whole forward."""
    layers = NumpyLayers(layer_card(ladder.check_width, ladder.check_layers))
    shape = f"{ladder.check_layers} layers, width {ladder.check_width}"
    checks = []
    for name, phase, tokens, batch in (
        (f"prefill {ladder.check_tokens} tokens, {shape}", "prefill", ladder.check_tokens, 1),
        (f"decode step, batch 1, context {ladder.check_tokens}, {shape}", "decode", ladder.check_tokens, 1),
        (f"decode step, batch 4, context {ladder.check_tokens}, {shape}", "decode", ladder.check_tokens, 4),
    ):
        launches = layers.launches(phase, tokens, batch)

        def forward():
            for kernel, fn in launches:
                for _ in range(kernel.count):
                    fn()

        checks.append(PassMeasurement(name, tuple(k for k, _ in launches), DTYPE, time_call(forward, ladder)))
    return tuple(checks)
