"""The paper's heterogeneous-fleet study: TCO of every prefill::decode device pair (DESIGN §5).

For each scenario (model, dtype, input/output tokens, SLA) and each pair of devices, the prefill side and the
decode side are sized independently, because the cost of a request is separable:

    $/request = price_P · tp_P · prefill_s / batch_P  +  price_D · tp_D · TBT · (output − 1) / batch_D

(device-seconds each side spends per request, times its $/device-second). The prefill side picks the TP degree
and batch minimising its term subject to TTFT = prefill + KV transfer to the decode device ≤ SLA and memory;
the decode side likewise subject to TBT ≤ SLA and memory. Balancing the fleet so neither side starves means
n_P : n_D = device-seconds per request of each side: the table prints that ratio. Offline scenarios drop the
latency limits and keep memory. Costs are compared with the baseline pair (H100::H100): benefit = baseline
$/M tokens ÷ pair $/M tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hetagent.cost.phases import memory_use, phase_time
from hetagent.cost.model import CostModel
from hetagent.errors import HetagentError
from hetagent.files import read_toml
from hetagent.hardware.pricebook import PriceBook, find_pricebook
from hetagent.hardware.tco import SECONDS_PER_HOUR, usd_per_million_tokens
from hetagent.models.card import ModelCard
from hetagent.models.catalog import card
from hetagent.models.kernels import decode_kernels, prefill_kernels


@dataclass(frozen=True)
class Workload:
    name: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class SLA:
    name: str
    ttft_s: float | None = None  # None: no limit (offline: the cheapest tokens, whatever the latency)
    tbt_s: float | None = None


@dataclass(frozen=True)
class Study:
    name: str
    devices: tuple[str, ...]
    baseline: tuple[str, str]  # (prefill device, decode device)
    models: tuple[str, ...]
    dtypes: tuple[str, ...]
    workloads: tuple[Workload, ...]
    slas: tuple[SLA, ...]
    tp_degrees: tuple[int, ...]
    prefill_batches: tuple[int, ...]
    decode_batches: tuple[int, ...]
    pricebook: PriceBook
    description: str = ""


@dataclass(frozen=True)
class Side:
    """The chosen configuration of one side (prefill or decode) of a pair."""

    device: str
    tp: int
    batch: int
    latency_s: float  # TTFT (prefill side, transfer included) or TBT (decode side)
    device_s_per_request: float  # device-seconds this side spends on one request
    usd_per_request: float
    binding: str  # what stops a larger batch at this TP degree


@dataclass(frozen=True)
class PairResult:
    model: str
    dtype: str
    workload: Workload
    sla: SLA
    prefill_device: str
    decode_device: str
    prefill: Side | None
    decode: Side | None
    infeasible: str = ""  # why no configuration meets the SLA
    usd_per_request: float | None = None
    usd_per_m_tokens: float | None = None  # tokens = input + output: everything the fleet processes
    benefit: float | None = None  # baseline $/M tokens ÷ this pair's

    @property
    def pair(self) -> str:
        return f"{self.prefill_device}::{self.decode_device}"

    @property
    def device_ratio(self) -> float | None:
        """Prefill devices per decode device in a balanced fleet."""
        if self.prefill is None or self.decode is None:
            return None
        return self.prefill.device_s_per_request / self.decode.device_s_per_request


@dataclass
class _Candidate:
    tp: int
    batch: int
    latency_s: float
    device_s: float
    violates: str = ""  # "" when within the SLA and memory


# ---------------------------------------------------------------- loading


def load_study(path: str | Path, *, pricebook: str | Path | None = None, devices: Sequence[str] | None = None) -> Study:
    """Read a study TOML (`spec/cost-model.md` section 5); `pricebook` / `devices` override the file's."""
    path = Path(path)
    data = read_toml(path, "study")
    required = {"name": str, "devices": list, "baseline": str, "models": list, "dtypes": list, "workloads": list,
                "slas": list, "tp": list, "prefill_batch": list, "decode_batch": list}
    for key, kind in required.items():
        if not isinstance(data.get(key), kind):
            raise HetagentError(f"{path}: field {key!r} is missing or not a {'string' if kind is str else 'list'}")
    unknown = set(data) - set(required) - {"pricebook", "description"}
    if unknown:
        raise HetagentError(f"{path}: unknown field(s) {', '.join(sorted(unknown))}; valid: {', '.join([*required, 'pricebook', 'description'])}")
    book = find_pricebook(pricebook if pricebook is not None else data.get("pricebook"), path.parent)
    device_list = tuple(devices) if devices else tuple(data["devices"])
    prefill, sep, decode = data["baseline"].partition("::")
    if not sep:
        raise HetagentError(f"{path}: baseline {data['baseline']!r} must read PREFILL::DECODE, e.g. 'h100-sxm::h100-sxm'")
    for key in ("tp", "prefill_batch", "decode_batch"):
        if not data[key] or any(not isinstance(v, int) or v <= 0 for v in data[key]):
            raise HetagentError(f"{path}: {key} = {data[key]!r} must list positive integers")
    return Study(
        name=data["name"],
        devices=device_list,
        baseline=(prefill, decode),
        models=tuple(data["models"]),
        dtypes=tuple(data["dtypes"]),
        workloads=tuple(_workload(w, path) for w in data["workloads"]),
        slas=tuple(_sla(s, path) for s in data["slas"]),
        tp_degrees=tuple(sorted(data["tp"])),
        prefill_batches=tuple(sorted(data["prefill_batch"])),
        decode_batches=tuple(sorted(data["decode_batch"])),
        pricebook=book,
        description=data.get("description", ""),
    )


def _workload(entry: Any, path: Path) -> Workload:
    try:
        workload = Workload(str(entry["name"]), int(entry["input_tokens"]), int(entry["output_tokens"]))
    except (KeyError, TypeError, ValueError):
        raise HetagentError(f"{path}: each [[workloads]] needs name, input_tokens and output_tokens; got {entry!r}") from None
    if workload.input_tokens <= 0 or workload.output_tokens <= 0:
        raise HetagentError(f"{path}: workload {workload.name!r}: token counts must be positive integers")
    return workload


def _sla(entry: Any, path: Path) -> SLA:
    if not isinstance(entry, dict) or "name" not in entry or set(entry) - {"name", "ttft_ms", "tbt_ms"}:
        raise HetagentError(f"{path}: each [[slas]] has a name and optionally ttft_ms and tbt_ms; got {entry!r}")
    limits = {}
    for key in ("ttft_ms", "tbt_ms"):
        if key in entry:
            if not isinstance(entry[key], (int, float)) or entry[key] <= 0:
                raise HetagentError(f"{path}: sla {entry['name']!r}: {key} = {entry[key]!r} must be a positive number")
            limits[key.replace("_ms", "_s")] = entry[key] / 1000
    return SLA(str(entry["name"]), **limits)


# ---------------------------------------------------------------- running


@dataclass
class StudyResult:
    study: Study
    results: list[PairResult] = field(default_factory=list)

    def scenarios(self) -> list[tuple[str, str, Workload, SLA]]:
        return list(dict.fromkeys((r.model, r.dtype, r.workload, r.sla) for r in self.results))


def run_study(study: Study, model: CostModel, progress=None) -> StudyResult:
    """Every scenario × every (prefill, decode) pair of the study's devices. `progress(advance)` is called once
    per scenario done."""
    for device in sorted({*study.devices, *study.baseline}):  # bad input fails here, before any work
        model.profile(device)
        study.pricebook.price_of(device)
    for model_name in study.models:
        for dtype in study.dtypes:
            card(model_name).dtype_bytes(dtype)
    outcome = StudyResult(study)
    for model_name in study.models:
        spec = card(model_name)
        for dtype in study.dtypes:
            for workload in study.workloads:
                sides = _Sides(model, spec, dtype, workload, study)
                for sla in study.slas:
                    outcome.results += _scenario(sides, study, sla)
                    if progress:
                        progress(1)
    return outcome


def scenario_count(study: Study) -> int:
    return len(study.models) * len(study.dtypes) * len(study.workloads) * len(study.slas)


class _Sides:
    """Timing of every (device, tp, batch) candidate of one (model, dtype, workload), shared across SLAs."""

    def __init__(self, model: CostModel, spec: ModelCard, dtype: str, workload: Workload, study: Study):
        self.model, self.card, self.dtype, self.workload, self.study = model, spec, dtype, workload, study
        self._prefill: dict[str, list[_Candidate]] = {}
        self._decode: dict[str, list[_Candidate]] = {}

    def prefill(self, device: str) -> list[_Candidate]:
        """Prefill candidates (latency without the KV transfer, which depends on the decode device)."""
        if device not in self._prefill:
            w, found = self.workload, []
            for tp in self._tp_degrees():
                for batch in self.study.prefill_batches:
                    fits = self._fits(device, tp, batch, context=w.input_tokens)
                    kernels = prefill_kernels(self.card, w.input_tokens, batch=batch, dtype=self.dtype, tp=tp)
                    seconds = phase_time(self.model, device, kernels, self.dtype, tp).seconds
                    found.append(_Candidate(tp, batch, seconds, seconds * tp / batch, "" if fits else "memory"))
            self._prefill[device] = found
        return self._prefill[device]

    def decode(self, device: str, sla: SLA) -> list[_Candidate]:
        if device not in self._decode:
            w, found = self.workload, []
            context = w.input_tokens + w.output_tokens // 2
            steps = max(w.output_tokens - 1, 1)  # the first token comes out of the prefill
            for tp in self._tp_degrees():
                for batch in self.study.decode_batches:
                    fits = self._fits(device, tp, batch, context=w.input_tokens + w.output_tokens)
                    kernels = decode_kernels(self.card, context, batch=batch, dtype=self.dtype, tp=tp)
                    seconds = phase_time(self.model, device, kernels, self.dtype, tp).seconds
                    found.append(_Candidate(tp, batch, seconds, seconds * steps * tp / batch, "" if fits else "memory"))
            self._decode[device] = found
        return [_limit(c, sla.tbt_s, "TBT") for c in self._decode[device]]

    def kv_transfer_s(self, prefill: str, decode: str, tp: int, batch: int) -> float:
        """Each prefill device sends its shard of the batch's KV caches over its own link."""
        nbytes = batch * self.workload.input_tokens * self.card.kv_bytes_per_token(self.dtype) / tp
        return self.model.transfer_time(prefill, decode, nbytes).seconds

    def _tp_degrees(self) -> list[int]:
        return [tp for tp in self.study.tp_degrees if self.card.num_heads % tp == 0]

    def _fits(self, device: str, tp: int, batch: int, context: int) -> bool:
        capacity = self.model.profile(device).memory_gb
        prompt = self.workload.input_tokens
        return memory_use(self.card, capacity, self.dtype, tp, batch, context, prompt).fits


def _limit(candidate: _Candidate, limit_s: float | None, name: str) -> _Candidate:
    if candidate.violates or limit_s is None or candidate.latency_s <= limit_s:
        return candidate
    return _Candidate(candidate.tp, candidate.batch, candidate.latency_s, candidate.device_s, f"{name} ≤ {limit_s * 1000:g} ms")


def _choose(candidates: list[_Candidate], device: str, usd_per_hour: float) -> tuple[Side | None, str]:
    """The cheapest feasible candidate, with what stops its next batch size; or why none is feasible."""
    feasible = [c for c in candidates if not c.violates]
    if not feasible:
        fitting = [c for c in candidates if c.violates != "memory"]
        if not fitting:
            return None, f"{device}: does not fit in memory at any TP degree searched"
        best = min(fitting, key=lambda c: c.latency_s)
        return None, f"{device}: {best.violates} not met, best {best.latency_s * 1000:.1f} ms (tp {best.tp}, batch {best.batch})"
    best = min(feasible, key=lambda c: (c.device_s, c.tp, c.batch))
    larger = [c for c in candidates if c.tp == best.tp and c.batch > best.batch]
    if not larger:
        binding = "largest batch searched"
    elif larger[0].violates:
        binding = larger[0].violates
    else:
        binding = "throughput saturates"  # a larger batch is allowed but no cheaper per request
    usd = usd_per_hour / SECONDS_PER_HOUR * best.device_s
    return Side(device, best.tp, best.batch, best.latency_s, best.device_s, usd, binding), ""


def _scenario(sides: _Sides, study: Study, sla: SLA) -> list[PairResult]:
    w, book = sides.workload, study.pricebook
    price = {d: book.usd_per_hour(d, sides.model.profile(d).tdp_w) for d in {*study.devices, *study.baseline}}
    decode_side = {d: _choose(sides.decode(d, sla), d, price[d]) for d in {*study.devices, study.baseline[1]}}
    pairs = [(p, d) for p in study.devices for d in study.devices]
    if study.baseline not in pairs:
        pairs.append(study.baseline)
    results = []
    for prefill_device, decode_device in pairs:
        with_transfer = []
        for c in sides.prefill(prefill_device):
            latency = c.latency_s + sides.kv_transfer_s(prefill_device, decode_device, c.tp, c.batch)
            with_transfer.append(_limit(_Candidate(c.tp, c.batch, latency, c.device_s, c.violates), sla.ttft_s, "TTFT"))
        prefill, prefill_why = _choose(with_transfer, prefill_device, price[prefill_device])
        decode, decode_why = decode_side[decode_device]
        result = PairResult(sides.card.name, sides.dtype, w, sla, prefill_device, decode_device, prefill, decode,
                            infeasible="; ".join(x for x in (prefill_why, decode_why) if x))
        if prefill and decode:
            per_request = prefill.usd_per_request + decode.usd_per_request
            # $/M tokens = fleet $/h ÷ tokens/h, for a fleet sized to serve one request per second
            per_m_tokens = usd_per_million_tokens(per_request * SECONDS_PER_HOUR, w.input_tokens + w.output_tokens)
            result = dataclasses.replace(result, usd_per_request=per_request, usd_per_m_tokens=per_m_tokens)
        results.append(result)
    baseline = next(r for r in results if (r.prefill_device, r.decode_device) == study.baseline)
    if baseline.usd_per_m_tokens:
        results = [dataclasses.replace(r, benefit=baseline.usd_per_m_tokens / r.usd_per_m_tokens) if r.usd_per_m_tokens else r for r in results]
    return results
