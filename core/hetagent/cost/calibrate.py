"""`hetagent calibrate --backend cpu`: time this host's kernels, fit its curves, store them, check them.

What is timed (numpy float32 on the host's BLAS, `hetagent.cost.numpy_layers`): every kernel of one transformer
layer for a ladder of model widths, as prefills of several lengths (GEMMs of many shapes, compute-bound) and as
decode steps of small batches (GEMVs, memory-bound, timed with a cold cache as inside a forward pass), each
alone, best of repeats; attention gets its own
compute curve (numpy's softmax makes it far slower than a GEMM of its FLOPs). The check: a small transformer's
whole prefill and decode steps, timed end to end and predicted from the fresh curves.

Efficiencies are fractions of the best rate measured here (GEMM FLOP/s, streaming bytes/s) when that beats the
profile's quick figures, so no efficiency exceeds 1. The calibration is stored per host (`hetagent.cost.store`)
and every later estimate for `host-cpu` on this host uses it.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hetagent.cost.curves import Calibration
from hetagent.cost.fit import Measurement, fit_calibration
from hetagent.cost.llm import phase_time
from hetagent.cost.numpy_layers import DTYPE, NumpyLayers
from hetagent.cost.roofline import RooflineModel
from hetagent.cost.store import host_id, save_host_calibration
from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard

BACKENDS = ("cpu",)
DEVICE = "host-cpu"


@dataclass(frozen=True)
class Plan:
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


FULL = Plan((256, 512, 1024, 2048), (8, 32, 128, 512), (1, 4, 16), 256, 6e9, 0.04, 25, 4, 1024, 256)
QUICK = Plan((256, 1024), (16, 128), (1, 8), 128, 1.5e9, 0.01, 5, 2, 512, 128)


@dataclass(frozen=True)
class Check:
    name: str
    measured_s: float
    predicted_s: float

    @property
    def error(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s


@dataclass(frozen=True)
class CalibrationReport:
    calibration: Calibration
    path: Path
    checks: tuple[Check, ...]
    measurements: tuple[Measurement, ...]  # what the curves were fitted to

    def to_dict(self) -> dict:
        return {
            "device": self.calibration.device,
            "path": str(self.path),
            "calibration": self.calibration.to_dict(),
            "checks": [{"name": c.name, "measured_s": c.measured_s, "predicted_s": c.predicted_s, "error": c.error}
                       for c in self.checks],
        }


def layer_card(width: int, layers: int = 1) -> ModelCard:
    """A Llama-3-shaped card of the given width: head 64, GQA 4:1, SwiGLU at 2.75× the width."""
    heads = max(width // 64, 4)
    return ModelCard(
        name=f"calibration-{width}", kind="llm", hidden_size=width, intermediate_size=width * 11 // 4,
        num_layers=layers, num_heads=heads, num_kv_heads=heads // 4, vocab_size=8192, default_dtype=DTYPE,
        source="hetagent calibrate: synthetic layer",
    )


def time_call(fn: Callable[[], object], plan: Plan, before: Callable[[], object] | None = None) -> float:
    """Best of repeated calls after one warm-up call: the least disturbed by whatever else shares the cores.
    `before` runs untimed ahead of each call (to evict the cache)."""
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < 3 or (spent < plan.min_seconds and len(times) < plan.max_repeats):
        if before:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return min(times)


def cache_evictor() -> Callable[[], object]:
    """Writes twice the last-level cache (64 MiB when the OS does not say). A decode step streams every weight
    from memory, so its weight kernels are timed cold; timed warm, a weight that fits in the cache would look
    several times faster than it runs inside a whole forward pass."""
    import numpy as np

    size = 32 << 20
    text = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
    if text.is_file() and text.read_text().strip().upper().endswith("K"):
        size = int(text.read_text().strip()[:-1]) << 10
    scratch = np.empty(2 * size // 4, dtype=np.float32)
    return lambda: scratch.fill(1.0)


def calibrate(backend: str, *, quick: bool = False, progress: Callable[[int, int, str], None] | None = None,
              registry=None) -> CalibrationReport:
    if backend not in BACKENDS:
        raise HetagentError(f"--backend {backend!r} cannot be calibrated; calibratable backends: {', '.join(BACKENDS)}")
    from hetagent.plugins.registry import Registry

    registry = registry or Registry.load([backend])
    profile = next((p for p in registry.device_profiles() if p.name == DEVICE), None)
    if profile is None:
        raise HetagentError(f"backend {backend!r} publishes no {DEVICE!r} profile to calibrate")
    plan = QUICK if quick else FULL
    steps = _steps(plan)
    evict = cache_evictor()
    measurements: list[Measurement] = []
    for done, (label, layers, phase, tokens, batch) in enumerate(steps):
        if progress:
            progress(done, len(steps) + 1, label)
        for kernel, fn in layers.launches(phase, tokens, batch):
            cold = phase == "decode" and kernel.kind in ("matmul", "matvec")
            measurements.append(Measurement(kernel, DTYPE, time_call(fn, plan, before=evict if cold else None)))
    calibration = _fit(profile, measurements, quick)
    if progress:
        progress(len(steps), len(steps) + 1, "checking a small transformer end to end")
    checks = _checks(profile, calibration, plan)
    path = save_host_calibration(backend, calibration)
    if progress:
        progress(len(steps) + 1, len(steps) + 1, "done")
    return CalibrationReport(calibration, path, checks, tuple(measurements))


def _steps(plan: Plan) -> list[tuple[str, NumpyLayers, str, int, int]]:
    steps = []
    for width in plan.widths:
        layers = NumpyLayers(layer_card(width))
        per_token = 2 * layers.card.decoder_layer_params()
        for tokens in plan.prefill_tokens:
            if per_token * tokens <= plan.layer_flops_limit:
                steps.append((f"width {width}, prefill {tokens} tokens", layers, "prefill", tokens, 1))
        for batch in plan.decode_batches:
            steps.append((f"width {width}, decode batch {batch}", layers, "decode", plan.decode_context, batch))
    return steps


def _fit(profile, measurements: list[Measurement], quick: bool) -> Calibration:
    # Rates above the profile's quick figures: the best this host showed becomes the reference.
    best_flops = max((m.kernel.flops / m.seconds for m in measurements if m.kernel.kind == "matmul"), default=0.0)
    best_bytes = max(m.kernel.bytes / m.seconds for m in measurements)
    peak = max(profile.peak_tflops.get(DTYPE, 0.0), best_flops / 1e12)
    bandwidth = max(profile.memory_bandwidth_gbs, best_bytes / 1e9)
    import numpy as np

    return fit_calibration(
        DEVICE, "cpu", measurements,
        peak_tflops={DTYPE: peak},
        memory_bandwidth_gbs=bandwidth,
        link_gbs=None,
        source=f"hetagent calibrate --backend cpu{' --quick' if quick else ''} on {host_id()}",
        host={
            "host": host_id(),
            "cpu": profile.display_name,
            "cores": profile.cores,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": quick,
        },
    )


def _checks(profile, calibration: Calibration, plan: Plan) -> tuple[Check, ...]:
    """A small transformer's prefill and decode step: measured end to end vs predicted from `calibration`."""
    model = RooflineModel([profile], calibrations=[calibration])
    card = layer_card(plan.check_width, plan.check_layers)
    layers = NumpyLayers(card)
    checks = []
    shape = f"{plan.check_layers} layers, width {plan.check_width}"
    for name, phase, tokens, batch in (
        (f"prefill {plan.check_tokens} tokens, {shape}", "prefill", plan.check_tokens, 1),
        (f"decode step, batch 1, context {plan.check_tokens}, {shape}", "decode", plan.check_tokens, 1),
        (f"decode step, batch 4, context {plan.check_tokens}, {shape}", "decode", plan.check_tokens, 4),
    ):
        launches = layers.launches(phase, tokens, batch)

        def forward():
            for kernel, fn in launches:
                for _ in range(kernel.count):
                    fn()

        measured = time_call(forward, plan)
        predicted = phase_time(model, DEVICE, [k for k, _ in launches], DTYPE, 1).seconds
        checks.append(Check(name, measured, predicted))
    return tuple(checks)
