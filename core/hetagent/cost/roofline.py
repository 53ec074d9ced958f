"""The roofline cost model with fitted efficiency curves (`spec/cost-model.md` section 2).

    t = fixed + max(F / (η_c(F) · peak[dtype]), B / min(η_m(B) · bandwidth, rows · row_rate))

Where η comes from, per device, first match wins:
1. a measured latency table a backend contributes (`hetagent_cost_models()`), for the bound class and dtype;
2. the device's own calibration: `hetagent calibrate` on this host, or a shipped reference (Vidur's H100/A100);
3. curves in the device's profile (`DeviceProfile.efficiency`);
4. the nearest measured device, rescaled: a kernel of size s on device X runs at the efficiency a kernel of size
   s · (figure_ref / figure_X) reaches on the reference, where the figure is the peak (compute curves), the
   memory bandwidth (memory curves) or the link speed (link curves). Equal ideal time, equal efficiency: the
   losses at small sizes are latencies (launch, ramp-up, tail), and a faster device needs a proportionally
   bigger kernel to hide them. The nearest reference is the one of the same family (CPU or not) closest in
   log peak + log bandwidth.

On top of the curves, a device's serving efficiency (`hetagent.cost.vendor`: factors on the compute and memory
rates fitted to its vendor's published serving throughput, or borrowed from the nearest device that has them)
scales every compute and memory term; links are not scaled.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from hetagent.cost.curves import (
    COMPUTE_CLASSES,
    CURVES_OF_KIND,
    FALLBACK_CLASS,
    LINK_CLASS_OF_KIND,
    Calibration,
    cached_class,
    combine,
    interpolate,
    interpolate_seconds,
)
from hetagent.cost.fit import ring_bytes
from hetagent.cost.model import KernelTime
from hetagent.cost.efficiency import ServingEfficiency, shipped_serving_efficiency
from hetagent.errors import HetagentError
from hetagent.hardware.device import DeviceProfile, Link
from hetagent.models.kernels import Kernel
from hetagent.backend.records import CostTable


# Where a device has no rate for a dtype: the dtype it computes in instead. Low-precision weights are upcast in
# registers (weight-only quantisation) so their bytes stay small; fp16 and bf16 run at each other's rate.
COMPUTE_FALLBACK = {
    "fp16": ("bf16", "fp32"),
    "bf16": ("fp16", "fp32"),
    "fp8": ("bf16", "fp16", "fp32"),
    "int8": ("bf16", "fp16", "fp32"),
    "fp4": ("fp8", "bf16", "fp16", "fp32"),
    "tf32": ("fp32",),
}


def compute_dtype(profile: DeviceProfile, dtype: str) -> str:
    """The dtype whose peak `dtype` work runs at on this device (itself, or the first fallback it has)."""
    for candidate in (dtype, *COMPUTE_FALLBACK.get(dtype, ())):
        if candidate in profile.peak_tflops:
            return candidate
    raise HetagentError(
        f"device {profile.name!r} has no compute rate for dtype {dtype!r} (nor a fallback); "
        f"it runs: {', '.join(profile.peak_tflops)}"
    )


def headline_tflops(peaks: Mapping[str, float]) -> float:
    for dtype in ("bf16", "fp16", "fp32"):
        if dtype in peaks:
            return peaks[dtype]
    return max(peaks.values())


@dataclass(frozen=True)
class _Rescaled:
    """One calibration applied to a device with other figures (identity when it was measured on the device)."""

    calibration: Calibration
    peak_tflops: Mapping[str, float]
    bandwidth_gbs: float
    basis: str
    own: bool = False  # the device's own calibration: the only one whose cache curves apply to it

    def compute_rate(self, op_class: str, dtype: str, flops: float) -> float | None:
        curve = self.calibration.curve(op_class, dtype) or self.calibration.curve(op_class)
        if curve is None:
            return None
        measured_peak = self.calibration.peak_tflops[curve.dtype]
        target_peak = self.peak_tflops[dtype]
        return interpolate(curve, flops * measured_peak / target_peak) * target_peak * 1e12

    def memory_rate(self, op_class: str, nbytes: float, rows: float = 0) -> float | None:
        """Bytes/s: the curve's fraction of the bandwidth; a row-wise kernel's rows, each streaming at the
        class's per-row rate (rescaled with the bandwidth), cannot go faster than all of them at once."""
        curve = self.calibration.curve(op_class)
        if curve is None:
            return None
        ratio = self.calibration.memory_bandwidth_gbs / self.bandwidth_gbs
        rate = interpolate(curve, nbytes * ratio) * self.bandwidth_gbs * 1e9
        row_gbs = self.calibration.row_gbs.get(op_class)
        if rows and row_gbs:
            rate = min(rate, rows * row_gbs * 1e9 / ratio)
        return rate

    def cache_rate(self, op_class: str, nbytes: float) -> float | None:
        """Bytes/s of a kernel of `op_class` whose operands are in the last-level cache: the device's own cache
        curve (a cache measured on one host says nothing about another device's)."""
        curve = self.calibration.curve(cached_class(op_class))
        if not self.own or curve is None or not self.calibration.cache_gbs:
            return None
        return interpolate(curve, nbytes) * self.calibration.cache_gbs * 1e9

    def link_rate(self, op_class: str, nbytes: float, link_gbs: float) -> float | None:
        curve = self.calibration.curve(op_class)
        if curve is None or not self.calibration.link_gbs:
            return None
        return interpolate(curve, nbytes * self.calibration.link_gbs / link_gbs) * link_gbs * 1e9


class RooflineModel:
    """`CostModel` over device profiles, measured tables and calibrations (shipped references + this host's)."""

    def __init__(
        self,
        profiles: Iterable[DeviceProfile],
        *,
        tables: Iterable[CostTable] = (),
        calibrations: Iterable[Calibration] | None = None,
        serving: Iterable[ServingEfficiency] | None = None,
    ):
        if calibrations is None:
            from hetagent.cost.reference import reference_calibrations
            from hetagent.cost.store import host_calibrations

            calibrations = [*reference_calibrations(), *host_calibrations()]
        self._profiles = {p.name: p for p in profiles}
        self._tables = {(t.device, t.op_class, t.dtype): t for t in tables}
        self._calibrations = {c.device: c for c in calibrations}  # later wins: this host's over the shipped
        self._chains: dict[str, tuple[_Rescaled, ...]] = {}
        if serving is None:
            serving = shipped_serving_efficiency()
        self._serving = {s.device: s for s in serving}
        self._serving_of: dict[str, tuple[ServingEfficiency | None, str]] = {}
        if not self._calibrations:
            raise HetagentError("no calibration at all: the shipped reference curves are missing from the install")

    @classmethod
    def from_registry(cls, registry) -> "RooflineModel":
        return cls(registry.device_profiles(), tables=registry.cost_models())

    # ---------------------------------------------------------------- devices

    @property
    def devices(self) -> list[str]:
        return sorted(self._profiles)

    def profile(self, device: str) -> DeviceProfile:
        try:
            return self._profiles[device]
        except KeyError:
            close = difflib.get_close_matches(device, list(self._profiles), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise HetagentError(f"unknown device {device!r}{hint} Known devices: {', '.join(self.devices)}") from None

    def basis(self, device: str) -> str:
        """Where this device's curves and serving efficiency come from, in words."""
        serving, how = self.serving_efficiency(device)
        return self._curves(device)[0].basis + (f"; {how}" if serving else "")

    def efficiency_source(self, device: str) -> dict:
        """What `hetagent devices --json` reports: where the curves and the serving efficiency come from, and
        from which device each is borrowed where the device has no measurement of its own."""
        curves = self._curves(device)[0]
        serving, how = self.serving_efficiency(device)
        return {
            "curves": curves.basis,
            "curves_borrowed_from": None if curves.calibration.device == device else curves.calibration.device,
            "serving_efficiency": None if serving is None else {
                "compute": serving.compute, "memory": serving.memory, "basis": how,
                "borrowed_from": None if serving.device == device else serving.device,
                "published_figures": serving.figures, "sources": list(serving.sources),
            },
        }

    def serving_efficiency(self, device: str) -> tuple[ServingEfficiency | None, str]:
        """The device's own fitted serving efficiency, else the nearest fitted device's (same family first)."""
        if device not in self._serving_of:
            profile = self.profile(device)
            own = self._serving.get(device)
            if own is not None:
                found = own, f"serving efficiency fitted to {own.figures} published figures"
            else:
                others = [s for s in self._serving.values() if s.device in self._profiles]
                others = [s for s in others if (self._profiles[s.device].kind == "cpu") == (profile.kind == "cpu")]
                if not others or profile.kind == "cpu":
                    found = None, ""
                else:
                    def distance(s):
                        p = self._profiles[s.device]
                        return (p.vendor != profile.vendor,
                                abs(math.log(headline_tflops(p.peak_tflops) / headline_tflops(profile.peak_tflops)))
                                + abs(math.log(p.memory_bandwidth_gbs / profile.memory_bandwidth_gbs)))

                    nearest = min(others, key=distance)
                    found = nearest, f"serving efficiency borrowed from {nearest.device} (no published figures)"
            self._serving_of[device] = found
        return self._serving_of[device]

    def _curves(self, device: str) -> tuple[_Rescaled, ...]:
        """The calibrations to ask for this device's curves, in order of preference."""
        if device not in self._chains:
            self._chains[device] = self._chain(self.profile(device))
        return self._chains[device]

    def _chain(self, profile: DeviceProfile) -> tuple[_Rescaled, ...]:
        device = profile.name
        chain: list[_Rescaled] = []
        own = self._calibrations.get(device)
        if own is not None:
            what = "calibrated on this host" if own.host else "measured"
            chain.append(_Rescaled(own, {**profile.peak_tflops, **own.peak_tflops}, own.memory_bandwidth_gbs, what,
                                   own=True))
        if profile.efficiency:
            from_profile = Calibration(
                device, profile.kind, profile.peak_tflops, profile.memory_bandwidth_gbs,
                profile.scale_up.gbps if profile.scale_up else None, {}, profile.efficiency,
                f"profile {device}",
            )
            chain.append(_Rescaled(from_profile, profile.peak_tflops, profile.memory_bandwidth_gbs, "profile curves"))
        for reference in self._references_by_distance(profile):
            chain.append(_Rescaled(reference, profile.peak_tflops, profile.memory_bandwidth_gbs,
                                   f"extrapolated from {reference.device}"))
        return tuple(chain)

    def _references_by_distance(self, profile: DeviceProfile) -> list[Calibration]:
        def distance(c: Calibration) -> tuple[bool, float]:
            other_family = (c.kind == "cpu") != (profile.kind == "cpu")
            spread = abs(math.log(headline_tflops(c.peak_tflops) / headline_tflops(profile.peak_tflops)))
            spread += abs(math.log(c.memory_bandwidth_gbs / profile.memory_bandwidth_gbs))
            return other_family, spread

        return sorted((c for c in self._calibrations.values() if c.device != profile.name), key=distance)

    def fixed_s(self, device: str, op_class: str) -> float:
        """The floor of a kernel of `op_class` (a memory or link class): from the device's own calibration, else
        its nearest reference that measured one."""
        return next((r.calibration.fixed_s[op_class] for r in self._curves(device) if op_class in r.calibration.fixed_s), 0.0)

    # ---------------------------------------------------------------- times

    def kernel_time(self, device: str, kernel: Kernel, dtype: str, tp: int = 1) -> KernelTime:
        if kernel.kind in LINK_CLASS_OF_KIND:
            if tp <= 1:
                return KernelTime(0.0, "link")
            return self._link_time(device, LINK_CLASS_OF_KIND[kernel.kind], kernel, tp, self._tp_link(device))
        profile = self.profile(device)
        compute_class, memory_class = CURVES_OF_KIND[kernel.kind]
        runs_as = compute_dtype(profile, dtype)
        compute_s = 0.0
        if compute_class and kernel.flops:
            rate, basis = self._first(device, lambda r: r.compute_rate(compute_class, runs_as, kernel.flops),
                                      fallback=lambda r: r.compute_rate(FALLBACK_CLASS.get(compute_class, compute_class), runs_as, kernel.flops))
            compute_s = kernel.flops / rate
        floor, rate = memory_class, None
        if kernel.cached:
            own = self._curves(device)[0]
            rate = own.cache_rate(memory_class, kernel.bytes)
        if rate:
            floor, memory_basis = cached_class(memory_class), f"{own.basis}, in the last-level cache"
        else:
            rate, memory_basis = self._first(device, lambda r: r.memory_rate(memory_class, kernel.bytes, kernel.rows),
                                             fallback=lambda r: r.memory_rate(FALLBACK_CLASS.get(memory_class, memory_class), kernel.bytes, kernel.rows))
        memory_s = kernel.bytes / rate
        serving, _ = self.serving_efficiency(device)
        if serving is not None:
            compute_s, memory_s = compute_s / serving.compute, memory_s / serving.memory
        op_class = compute_class if compute_s > memory_s else memory_class
        body = combine(kernel.kind, compute_s, memory_s)
        basis = basis if compute_s > memory_s else memory_basis
        fixed = self.fixed_s(device, floor)
        table = self._tables.get((device, op_class, dtype))
        if table is not None:  # a backend's own measurement of the binding class beats any curve
            size = kernel.flops if op_class in COMPUTE_CLASSES else kernel.bytes
            body, fixed, basis = interpolate_seconds(table.points, size), 0.0, f"table from backend {table.backend}"
        bound = "overhead" if fixed > body else ("compute" if op_class in COMPUTE_CLASSES else "memory")
        return KernelTime(fixed + body, bound, compute_s, memory_s, fixed, basis)

    def cache_bytes(self, device: str) -> float:
        own = self._curves(device)[0]
        return own.calibration.cache_bytes if own.own and own.calibration.cache_gbs else 0.0

    def transfer_time(self, src: str, dst: str, nbytes: float) -> KernelTime:
        """Same device type: the two sit in one node and share the scale-up link (NVLink, Infinity Fabric).
        Otherwise (another generation or vendor): there is no common scale-up fabric, so the KV cache crosses
        the network at the slower of the two NICs."""
        source, target = self.profile(src), self.profile(dst)
        if src == dst and source.scale_up is not None:
            link = source.scale_up
        else:
            nics = [p.scale_out for p in (source, target) if p.scale_out is not None]
            if not nics:
                raise HetagentError(f"no link between {src!r} and {dst!r}: neither profile has a scale_out link")
            link = min(nics, key=lambda nic: nic.gbps)
        return self._link_time(src, "p2p", Kernel("kv_transfer", "transfer", 0.0, nbytes), 2, link)

    def _tp_link(self, device: str) -> Link:
        profile = self.profile(device)
        link = profile.scale_up or profile.scale_out
        if link is None:
            raise HetagentError(f"device {device!r} has no scale-up or scale-out link: tensor parallelism needs one")
        return link

    def _link_time(self, device: str, op_class: str, kernel: Kernel, participants: int, link: Link) -> KernelTime:
        moved = ring_bytes(kernel, participants)
        rate, basis = self._first(device, lambda r: r.link_rate(op_class, kernel.bytes, link.gbps))
        fixed = self.fixed_s(device, op_class)
        body = moved / rate
        return KernelTime(fixed + body, "link" if body >= fixed else "overhead", 0.0, body, fixed, f"{basis} over {link.name}")

    def _first(self, device: str, ask, fallback=None) -> tuple[float, str]:
        """The first calibration in the device's chain that answers `ask`, then `fallback`: first among those of
        the device's family (CPU or not), then the others — a GPU's attention falls back to its family's GEMM
        curve before it borrows a CPU's measured attention curve."""
        cpu = self.profile(device).kind == "cpu"
        chain = self._curves(device)
        for family in ([r for r in chain if (r.calibration.kind == "cpu") == cpu],
                       [r for r in chain if (r.calibration.kind == "cpu") != cpu]):
            for question in (ask, fallback) if fallback else (ask,):
                for rescaled in family:
                    rate = question(rescaled)
                    if rate:
                        return rate, rescaled.basis
        raise HetagentError(f"no calibration has the curve needed to time work on {device!r}")
