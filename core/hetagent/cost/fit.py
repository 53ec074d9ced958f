"""Fit a device's efficiency curves from measured kernel times (Vidur's GPU tables, `hetagent calibrate`).

The model being fitted is the roofline of `hetagent.cost.roofline`:

    t = fixed + max(F / (η_c(F) · peak), B / (η_m(B) · bandwidth))

`fixed` is the floor a kernel of its class costs: the smallest (measured − ideal time at full peak or bandwidth)
of the class, so a norm's floor is a few µs where a residual add's is one. A kernel that only moves memory gives one
sample of its class's η_m = B / (bandwidth · (t − fixed)). A row-wise kernel (`Kernel.rows`: a norm, an activation)
also cannot finish before one row does, at the class's per-row rate: its memory term is max(B / (η_m · bandwidth),
(B / rows) / row_rate). The floor and the row rate are fitted together with the curve, by the pair that gives the
class the smallest mean |log(predicted / measured)| — a 2-row decode batch of a wide model is one thread block's
serial stream per row, not a fraction of the device's bandwidth. A matmul gives a sample of η_c or of η_m depending on
which term binds, and which term binds depends on the curves being fitted: we start from the ideal ridge point
(peak / bandwidth) and alternate between assigning samples and refitting both curves until the assignment
settles. A curve is the per-bin median of its samples over equal-width bins of log-size, so it follows the
typical kernel, not the outliers. Collectives are fitted the same way against the link bandwidth.

Kernels measured with their operands in the last-level cache (`Kernel.cached`: GEMVs and decode GEMMs timed warm)
are fitted apart, the same way, against the best rate they reached (`Calibration.cache_gbs`): their memory curves
and floors are those of `curves.cached_class`; cold kernels alone set everything else.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from hetagent.backend.records import Measurement
from hetagent.cost.curves import (
    CURVES_OF_KIND,
    LINK_CLASS_OF_KIND,
    TRANSITION_P,
    Calibration,
    cached_class,
    floor_class,
)
from hetagent.hardware.device import EfficiencyCurve
from hetagent.models.kernels import Kernel

CURVE_POINTS = 16
REASSIGN_ROUNDS = 8
SETTLE_ROUNDS = 3  # rounds before a stable assignment may end the fit: the curves still move as the other term does
MIN_SHARE = 0.05  # a sample's own term is at least this share of its body
MIN_EFFICIENCY = 1e-4
# Per-row rates tried: log-spaced fractions of the device's bandwidth (a row never streams faster than the device)
ROW_RATE_STEPS = 241
ROW_RATE_RANGE = (1e-4, 1.0)


def ring_bytes(kernel: Kernel, participants: int) -> float:
    """Bytes each device sends in a ring all-reduce of `kernel.bytes`: 2·(p−1)/p of the message; a
    point-to-point transfer sends the message once."""
    if kernel.kind == "allreduce":
        return 2 * (participants - 1) / participants * kernel.bytes
    return kernel.bytes


def fit_calibration(
    device: str,
    kind: str,
    measurements: Sequence[Measurement],
    *,
    peak_tflops: Mapping[str, float],
    memory_bandwidth_gbs: float,
    link_gbs: float | None,
    source: str,
    host: Mapping[str, object] | None = None,
    cache_bytes: float = 0.0,
) -> Calibration:
    import numpy as np

    cached = [m for m in measurements if m.kernel.cached]
    measurements = [m for m in measurements if not m.kernel.cached]
    links = [m for m in measurements if m.kernel.kind in LINK_CLASS_OF_KIND]
    # matrix-vector products are memory-bound everywhere (about 1 FLOP per byte): fitted like elementwise kernels
    memory_only = [m for m in measurements if m.kernel.kind == "matvec" or m.kernel.kind in CURVES_OF_KIND and CURVES_OF_KIND[m.kernel.kind][0] is None]
    matmuls = [m for m in measurements if m.kernel.kind == "matmul"]
    attention = [m for m in measurements if m.kernel.kind == "attention"]
    bandwidth = memory_bandwidth_gbs * 1e9
    fixed: dict[str, float] = {}  # floor per class: what is left of its quickest kernel once its ideal time is paid
    for m in measurements:
        op_class = floor_class(m.kernel.kind)
        if m.kernel.kind in LINK_CLASS_OF_KIND:
            ideal = ring_bytes(m.kernel, m.tp) / (link_gbs * 1e9) if link_gbs else 0.0
        else:
            ideal = max(m.kernel.flops / (peak_tflops[m.dtype] * 1e12), m.kernel.bytes / bandwidth)
        fixed[op_class] = min(fixed.get(op_class, m.seconds), max(m.seconds - ideal, 0.0))

    samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    curves_of_memory: list[EfficiencyCurve] = []

    def add(op_class: str, dtype: str, size: float, efficiency: float) -> None:
        sizes, effs = samples.setdefault((op_class, dtype), ([], []))
        sizes.append(size)
        effs.append(efficiency)

    for m in attention:  # timed whole (softmax included): all of it counts against the compute curve
        body = m.seconds - fixed[floor_class(m.kernel.kind)]
        if body > 0 and m.kernel.flops:
            add("attention", m.dtype, m.kernel.flops, m.kernel.flops / (peak_tflops[m.dtype] * 1e12 * body))
    memory_classes: dict[str, list[Measurement]] = {}
    for m in memory_only:
        memory_classes.setdefault(floor_class(m.kernel.kind), []).append(m)
    row_gbs: dict[str, float] = {}
    for op_class, members in memory_classes.items():
        curve, fixed[op_class], row_rate = _fit_memory_class(op_class, members, bandwidth, source, np)
        if curve is not None:
            curves_of_memory.append(curve)
        if row_rate is not None:
            row_gbs[op_class] = float(f"{row_rate / 1e9:.4g}")
    if link_gbs:
        for m in links:
            body = m.seconds - fixed[floor_class(m.kernel.kind)]
            if body > 0:
                add(floor_class(m.kernel.kind), m.dtype, m.kernel.bytes, ring_bytes(m.kernel, m.tp) / (link_gbs * 1e9 * body))

    curves = curves_of_memory + [_curve(op, dtype, *sample, source, np) for (op, dtype), sample in samples.items()]
    if matmuls:
        curves += _fit_matmuls(matmuls, fixed["gemm_memory"], peak_tflops, bandwidth, source, np)
    cache_gbs = 0.0
    if cached and cache_bytes:
        cache_gbs = max(m.kernel.bytes / m.seconds for m in cached) / 1e9
        cached_curves, cached_fixed = _fit_cached(cached, curves, peak_tflops, cache_gbs * 1e9, source, np)
        curves += cached_curves
        fixed.update(cached_fixed)
    return Calibration(
        device=device,
        kind=kind,
        peak_tflops=peak_tflops,
        memory_bandwidth_gbs=memory_bandwidth_gbs,
        link_gbs=link_gbs,
        fixed_s=fixed,
        curves=tuple(sorted(curves, key=lambda c: (c.op_class, c.dtype))),
        source=source,
        host=host or {},
        row_gbs=row_gbs,
        cache_bytes=cache_bytes if cache_gbs else 0.0,
        cache_gbs=float(f"{cache_gbs:.4g}"),
    )


def _fit_cached(measurements: list[Measurement], compute: list[EfficiencyCurve], peak_tflops, cache_rate: float,
                source: str, np):
    """The memory curves and floors of `CACHED_CLASSES` from kernels timed with their operands in the cache:
    GEMVs as a memory class; decode GEMMs by the memory term left of each body once the cold fit's compute term
    (`compute`: FLOPs run no faster for being in the cache) is taken out, as `_fit_matmuls` does."""
    curves, fixed = [], {}
    vectors = [m for m in measurements if m.kernel.kind == "matvec"]
    if vectors:
        curve, fixed[cached_class("gemv")], _ = _fit_memory_class(cached_class("gemv"), vectors, cache_rate, source, np)
        curves += [curve] if curve is not None else []
    p = TRANSITION_P
    for dtype in sorted({m.dtype for m in measurements if m.kernel.kind == "matmul"}):
        products = [m for m in measurements if m.kernel.kind == "matmul" and m.dtype == dtype]
        gemm = next((c for c in compute if c.op_class == "gemm" and c.dtype == dtype), None)
        flops = np.array([m.kernel.flops for m in products])
        traffic = np.array([m.kernel.bytes for m in products])
        seconds = np.array([m.seconds for m in products])
        compute_s = flops / (peak_tflops[dtype] * 1e12 * _eval(gemm, flops, np)) if gemm else np.zeros_like(flops)
        floor = max(float(np.min(seconds - np.maximum(compute_s, traffic / cache_rate))), 0.0)
        fixed[cached_class("gemm_memory")] = floor
        body = seconds - floor
        own = np.power(np.maximum(body**p - compute_s**p, (MIN_SHARE * body) ** p), 1 / p)
        curves.append(_curve(cached_class("gemm_memory"), dtype, traffic, traffic / (cache_rate * own), source, np))
    return curves, fixed


def _fit_memory_class(op_class: str, members: list[Measurement], bandwidth: float, source: str, np):
    """(curve, floor, row rate in bytes/s or None) of one memory class. The floor is what the quickest kernel
    leaves once its ideal time (and, for row-wise kernels, its row time) is paid. For row-wise kernels each row
    rate tried sets the floor, refits the curve on the samples the row term does not bind and is scored on all of
    them (mean |log(predicted / measured)|); no row term at all is one of the candidates."""
    nbytes = np.array([m.kernel.bytes for m in members], dtype=float)
    seconds = np.array([m.seconds for m in members])
    rows = np.array([m.kernel.rows for m in members], dtype=float)
    dtype = max({m.dtype for m in members}, key=[m.dtype for m in members].count)
    per_row = nbytes / rows if rows.all() else np.zeros_like(nbytes)
    ideal = nbytes / bandwidth

    def fitted(rate: float):
        row_s = per_row / rate
        floor = max(float(np.min(seconds - np.maximum(ideal, row_s))), 0.0)
        body = seconds - floor
        streams = (row_s < body) & (body > 0)
        if not streams.any():
            return math.inf, None, floor
        curve = _curve(op_class, dtype, nbytes[streams], nbytes[streams] / (bandwidth * body[streams]), source, np)
        predicted = floor + np.maximum(nbytes / (bandwidth * _eval(curve, nbytes, np)), row_s)
        return float(np.mean(np.abs(np.log(predicted / seconds)))), curve, floor

    rates = [math.inf]
    if rows.all():
        rates += list(bandwidth * np.geomspace(*ROW_RATE_RANGE, ROW_RATE_STEPS))
    rate = min(rates, key=lambda r: fitted(r)[0])
    _, curve, floor = fitted(rate)
    return curve, floor, None if math.isinf(rate) else float(rate)


def _fit_matmuls(measurements: list[Measurement], fixed: float, peak_tflops, bandwidth: float, source: str, np) -> list[EfficiencyCurve]:
    """The compute (gemm) and memory (gemm_memory) curves of multi-row matmuls, by alternating assignment. Times
    combine as `curves.combine` does: each sample's own term is what is left of its body once the other term
    (from the other curve of the previous round) is taken out, t_own = (body^p − t_other^p)^(1/p)."""
    curves: list[EfficiencyCurve] = []
    p = TRANSITION_P
    for dtype in sorted({m.dtype for m in measurements}):
        rows = [m for m in measurements if m.dtype == dtype and m.seconds > fixed]
        if not rows:
            continue
        flops = np.array([m.kernel.flops for m in rows])
        traffic = np.array([m.kernel.bytes for m in rows])
        body = np.array([m.seconds - fixed for m in rows])
        peak = peak_tflops[dtype] * 1e12
        compute_bound = flops / peak > traffic / bandwidth  # the ideal ridge point to start from
        compute_s = np.zeros_like(flops)
        memory_s = np.zeros_like(traffic)
        gemm = memory = None
        for round_ in range(REASSIGN_ROUNDS):
            own_compute = np.power(np.maximum(body**p - memory_s**p, (MIN_SHARE * body) ** p), 1 / p)
            own_memory = np.power(np.maximum(body**p - compute_s**p, (MIN_SHARE * body) ** p), 1 / p)
            if compute_bound.any():
                gemm = _curve("gemm", dtype, flops[compute_bound], flops[compute_bound] / (peak * own_compute[compute_bound]), source, np)
            if (~compute_bound).any():
                memory = _curve("gemm_memory", dtype, traffic[~compute_bound], traffic[~compute_bound] / (bandwidth * own_memory[~compute_bound]), source, np)
            compute_s = flops / (peak * _eval(gemm, flops, np)) if gemm else np.zeros_like(flops)
            memory_s = traffic / (bandwidth * _eval(memory, traffic, np)) if memory else np.zeros_like(traffic)
            reassigned = compute_s > memory_s
            if (reassigned == compute_bound).all() and round_ >= SETTLE_ROUNDS:
                break
            compute_bound = reassigned
        curves += [c for c in (gemm, memory) if c is not None]
    return curves


def _eval(curve: EfficiencyCurve, sizes, np):
    """`curves.interpolate` over an array."""
    xs, ys = zip(*curve.points)
    return np.interp(np.log(sizes), np.log(xs), ys)


def _curve(op_class: str, dtype: str, sizes: Iterable[float], efficiencies: Iterable[float], source: str, np) -> EfficiencyCurve:
    """Per-bin medians over CURVE_POINTS bins equally wide in log-size (empty bins skipped), so small kernels get
    as many points as large ones however the measurements are spread."""
    sizes = np.asarray(list(sizes), dtype=float)
    efficiencies = np.clip(np.asarray(list(efficiencies), dtype=float), MIN_EFFICIENCY, 1.0)
    logs = np.log(sizes)
    edges = np.linspace(logs.min(), logs.max(), CURVE_POINTS + 1)
    bins = np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, CURVE_POINTS - 1)
    points = []
    for b in np.unique(bins):
        members = bins == b
        points.append((float(np.exp(np.median(logs[members]))), float(np.median(efficiencies[members]))))
    return EfficiencyCurve(op_class, dtype, tuple((float(f"{s:.6g}"), float(f"{e:.4g}")) for s, e in points), source)
