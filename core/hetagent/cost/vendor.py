"""Serving efficiency per device, fitted to the vendors' published serving throughput (`spec/cost-model.md` §2.1).

Kernel curves say how fast isolated kernels run (Vidur's H100/A100 measurements; other devices borrow them by
extrapolation). A serving engine reaches a different fraction of a device: fused or unfused kernels, paged
attention, scheduling gaps, and the vendor's software maturity — and that fraction differs by vendor, which
borrowed curves cannot know. So each device with published figures (`reference/vendor-figures.toml`: TensorRT-LLM,
Intel Gaudi, AMD ROCm tables, every number with its source) gets two factors, one on the compute rate and one on
the memory rate its curves give, chosen so `hetagent.cost.serving.max_throughput` reproduces the figures
(least squares in log throughput over a log grid). A device without figures borrows the factors of the nearest
device that has them (same family, nearest in log peak + log bandwidth) and says so. MLPerf Inference results
(`reference/mlperf-figures.toml`, `mlperf_figures()`) are kept apart: never fitted, only checked against.

    python -m hetagent.cost.vendor            # refit and write reference/serving-efficiency.toml
"""

from __future__ import annotations

import argparse
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from hetagent.cost.curves import combine
from hetagent.cost.model import KernelTime
from hetagent.cost.efficiency import EFFICIENCY_FILE, ServingEfficiency
from hetagent.cost.reference import REFERENCE_DIR
from hetagent.cost.roofline import RooflineModel
from hetagent.errors import HetagentError
from hetagent.files import read_toml

FIGURES_FILE = REFERENCE_DIR / "vendor-figures.toml"
MLPERF_FILE = REFERENCE_DIR / "mlperf-figures.toml"  # the independent check: not fitted
# factor grid: 1/8 … 2 in steps of 2^(1/8) (±4.5 % at most between points; a factor above 1: the vendor's
# kernels beat the curves)
GRID = tuple(round(0.125 * 2 ** (i / 8), 4) for i in range(33))


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    url: str
    note: str = ""


@dataclass(frozen=True)
class Figure:
    """One published throughput: `output_tokens_per_s` of `tp` devices serving input/output-token requests."""

    device: str
    model: str
    dtype: str
    tp: int
    input_tokens: int
    output_tokens: int
    output_tokens_per_s: float
    source: str

    @property
    def label(self) -> str:
        return f"{self.device} {self.model} {self.dtype} tp{self.tp} {self.input_tokens}/{self.output_tokens}"


@dataclass(frozen=True)
class MLPerfFigure:
    """One MLPerf Inference Offline result: `output_tokens_per_s` of `devices` accelerators running `devices / tp`
    data-parallel replicas of a `tp`-way model, `output_tokens` generated per sample on average."""

    result: str  # MLPerf result ID
    device: str
    model: str
    dtype: str
    devices: int
    tp: int
    output_tokens: float
    output_tokens_per_s: float
    source: str

    @property
    def label(self) -> str:
        return f"{self.result} {self.devices}x {self.device} {self.model} {self.dtype} tp{self.tp}"

    def replica(self, input_tokens: int) -> Figure:
        """The figure of one replica (its tp devices) at an assumed mean prompt length: Offline has no latency
        limit and replicas share nothing, so the system's throughput is replicas × one replica's."""
        return Figure(self.device, self.model, self.dtype, self.tp, input_tokens, round(self.output_tokens),
                      self.output_tokens_per_s * self.tp / self.devices, self.source)


def _sources(data: dict) -> dict[str, Source]:
    return {k: Source(k, v["title"], v["url"], v.get("note", "")) for k, v in data["sources"].items()}


def _known_source(path: Path, row, source: str, sources: dict) -> None:
    if source not in sources:
        raise HetagentError(f"{path}: figure {row!r} names unknown source {source!r} (known: {', '.join(sources)})")


@functools.cache
def published_figures() -> tuple[dict[str, Source], tuple[Figure, ...]]:
    data = read_toml(FIGURES_FILE, "vendor figures")
    sources = _sources(data)
    figures = []
    for row in data["figures"]:
        device, model, dtype, tp, inp, out, tps, source = row
        _known_source(FIGURES_FILE, row, source, sources)
        figures.append(Figure(device, model, dtype, int(tp), int(inp), int(out), float(tps), source))
    return sources, tuple(figures)


@functools.cache
def mlperf_figures() -> tuple[dict[str, Source], tuple[MLPerfFigure, ...], tuple[int, ...]]:
    """MLPerf results, their sources and the assumed mean prompt lengths to check them at (`spec/cost-model.md`
    §8). Not used by `fit`."""
    data = read_toml(MLPERF_FILE, "MLPerf figures")
    sources = _sources(data)
    figures = []
    for row in data["figures"]:
        result, device, model, dtype, devices, tp, out, tps, source = row
        _known_source(MLPERF_FILE, row, source, sources)
        if int(devices) % int(tp):
            raise HetagentError(f"{MLPERF_FILE}: figure {row!r}: {devices} devices do not split into tp {tp} replicas")
        figures.append(MLPerfFigure(result, device, model, dtype, int(devices), int(tp), float(out), float(tps), source))
    return sources, tuple(figures), tuple(int(i) for i in data["input_tokens"])


# ---------------------------------------------------------------- fitting


class _Scaled:
    """A cost model whose kernel times are a base model's with compute and memory rates scaled; base times are
    computed once per kernel, so trying many factors costs arithmetic only."""

    def __init__(self, base):
        self.base = base
        self.compute = self.memory = 1.0
        self._cache: dict = {}

    def profile(self, device):
        return self.base.profile(device)

    def transfer_time(self, src, dst, nbytes):
        return self.base.transfer_time(src, dst, nbytes)

    def cache_bytes(self, device):
        return self.base.cache_bytes(device)

    def kernel_time(self, device, kernel, dtype, tp=1):
        key = (device, kernel, dtype, tp)
        base = self._cache.get(key)
        if base is None:
            base = self._cache[key] = self.base.kernel_time(device, kernel, dtype, tp)
        if base.bound == "link" or kernel.kind in ("allreduce", "transfer"):
            return base
        compute, memory = base.compute_s / self.compute, base.memory_s / self.memory
        body = combine(kernel.kind, compute, memory)
        bound = "overhead" if base.fixed_s > body else ("compute" if compute > memory else "memory")
        return KernelTime(base.fixed_s + body, bound, compute, memory, base.fixed_s, base.basis)


def predict(model, figure: Figure) -> float:
    """Predicted output tokens/s of the figure's tp devices (maximum throughput over batch at its TP degree)."""
    from hetagent.cost.serving import Workload, max_throughput
    from hetagent.models.catalog import card

    point = max_throughput(model, card(figure.model), figure.device, dtype=figure.dtype,
                           workload=Workload(figure.input_tokens, figure.output_tokens), tp_degrees=(figure.tp,))
    return point.output_tokens_per_s


class Predictions:
    """Predictions of some figures at points of GRID, computed when first asked for."""

    def __init__(self, base_model, figures: Sequence[Figure]):
        self.figures = list(figures)
        self._scaled = _Scaled(base_model)
        self._at: dict[tuple[float, float], list[float]] = {}

    def at(self, point: tuple[float, float]) -> list[float]:
        if point not in self._at:
            self._scaled.compute, self._scaled.memory = point
            self._at[point] = [predict(self._scaled, f) for f in self.figures]
        return self._at[point]


def best_factors(predictions: Predictions, use: Sequence[int], start: tuple[int, int] | None = None) -> tuple[float, float]:
    """The GRID point minimising the squared log error over the figures at indices `use`: a walk to the best of
    the 8 neighbours until none is better (the loss is smooth and single-valleyed in log factors)."""
    figures = predictions.figures

    def loss(ij):
        values = predictions.at((GRID[ij[0]], GRID[ij[1]]))
        return sum(math.log(values[k] / figures[k].output_tokens_per_s) ** 2 for k in use)

    here = start or (GRID.index(1.0), GRID.index(1.0))
    while True:
        around = [(here[0] + di, here[1] + dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
        around = [ij for ij in around if 0 <= ij[0] < len(GRID) and 0 <= ij[1] < len(GRID)]
        best = min(around, key=lambda ij: (loss(ij), ij != here))
        if best == here:
            return GRID[here[0]], GRID[here[1]]
        here = best


def base_model(profiles: Iterable):
    """The kernel-curve model without any serving efficiency (what the factors are fitted on top of)."""
    return RooflineModel(profiles, serving=())


def fit(profiles, figures: Sequence[Figure] | None = None) -> list[ServingEfficiency]:
    figures = figures if figures is not None else published_figures()[1]
    model = base_model(profiles)
    fitted = []
    for device in sorted({f.device for f in figures}):
        mine = [f for f in figures if f.device == device]
        c, m = best_factors(Predictions(model, mine), range(len(mine)))
        fitted.append(ServingEfficiency(device, c, m, len(mine), tuple(sorted({f.source for f in mine}))))
    return fitted


def save(fitted: Sequence[ServingEfficiency], path: Path = EFFICIENCY_FILE) -> None:
    lines = [
        "# Serving efficiency per device, fitted by `python -m hetagent.cost.vendor` to reference/vendor-figures.toml:",
        "# the fraction of the kernel curves' compute and memory rates each device reaches in its vendor's serving stack.",
        "",
    ]
    for s in fitted:
        lines += [f"[devices.{s.device}]", f"compute = {s.compute}", f"memory = {s.memory}", f"figures = {s.figures}",
                  f"sources = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in s.sources)}]", ""]
    path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    from hetagent.backend.registry import Registry

    parser = argparse.ArgumentParser(prog="python -m hetagent.cost.vendor", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=EFFICIENCY_FILE)
    args = parser.parse_args(argv)
    profiles = Registry.load().device_profiles()  # every installed backend's: the figures name their devices
    fitted = fit(profiles)
    save(fitted, args.out)
    for s in fitted:
        print(f"{s.device}: compute × {s.compute}, memory × {s.memory} ({s.figures} figures: {', '.join(s.sources)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
