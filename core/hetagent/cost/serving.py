"""End-to-end serving estimates: the most output tokens/s per device over TP degree and batch
(`spec/cost-model.md` section 6).

**Aggregated** (one device type runs prefill and decode, as vLLM / TensorRT-LLM / TGI do): `batch` sequences
decode together with a paged KV cache, so a sequence holds on average input + output/2 tokens of cache. New
prompts are prefilled in chunks of up to `CHUNK_TOKENS` prompt tokens between decode steps. Over one request's
life the engine produces batch·output tokens in output decode steps plus batch prefills:

    step  = decode(batch, context = input + output/2) + batch/output · prefill_per_prompt
    output tokens/s (tp devices) = batch / step;   TBT = step;   TTFT = prefill of one chunk + one decode step

**Disaggregated** (`P::D`): prefill devices run chunks of prompts and send each request's KV cache to a decode
device; a balanced fleet spends, per request, tp_P · prefill_per_prompt device-seconds on P and
tp_D · output · decode_step / batch_D on D, so per device output = output / (the sum).

Each candidate (tp, batch) must fit (weights/tp + KV of the batch + one chunk's activations ≤ 0.9 · capacity) and
meet the TTFT / TBT limits. The binding limit is what rejects the next larger batch at the chosen TP degree
(memory, TTFT, TBT), "throughput saturates" when the next batch is allowed but gains < 1 %, or "largest batch
searched".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hetagent.cost.phases import USABLE_MEMORY_FRACTION, TP_DEGREES, check_request, phase_time
from hetagent.cost.model import CostModel
from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard
from hetagent.models.kernels import decode_kernels, per_device, prefill_kernels

CHUNK_TOKENS = 8192  # prompt tokens per prefill launch (vLLM's and TensorRT-LLM's default max batched tokens)
BATCHES = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
SATURATION_GAIN = 0.01


@dataclass(frozen=True)
class Workload:
    input_tokens: int
    output_tokens: int
    ttft_s: float | None = None  # None: no limit
    tbt_s: float | None = None


@dataclass(frozen=True)
class ServingPoint:
    """The best configuration found, with its figures. Disaggregated points also fill the prefill_* fields."""

    model: str
    dtype: str
    device: str  # "h100-sxm", or "PREFILL::DECODE"
    tp: int  # decode side's TP degree when disaggregated
    batch: int  # concurrent sequences per tp group (decode side when disaggregated)
    ttft_s: float
    tbt_s: float
    output_tokens_per_s: float  # per tp group (aggregated) or per balanced P+D group (disaggregated)
    output_tokens_per_s_per_device: float
    binding: str
    memory_gb: float  # per device (decode side)
    prefill_tp: int | None = None
    prefill_batch: int | None = None
    prefill_devices_per_decode_device: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Candidate:
    tp: int
    batch: int
    ttft_s: float
    tbt_s: float
    per_device: float  # output tokens/s per device
    total: float
    memory_gb: float
    violates: str = ""
    extra: dict | None = None


def _chunks(workload: Workload) -> list[int]:
    """Prompts per prefill launch to try: powers of two up to CHUNK_TOKENS of prompt tokens (at least one)."""
    most = max(1, CHUNK_TOKENS // workload.input_tokens)
    return [c for c in (2**i for i in range(14)) if c < most] + [most]


def _kv_gb(card: ModelCard, dtype: str, tp: int, batch: int, context: float) -> float:
    share = per_device(card.num_kv_heads, tp) / card.num_kv_heads
    return batch * (context * card.kv_bytes_per_token(dtype) + card.cross_kv_bytes(dtype)) * share / 1e9


def _memory_gb(card: ModelCard, dtype: str, tp: int, batch: int, context: float, chunk: int, prompt: int) -> float:
    activations = card.activation_bytes(chunk * prompt, dtype, tp, sequences=chunk) / 1e9
    return card.weight_bytes(dtype) / tp / 1e9 + _kv_gb(card, dtype, tp, batch, context) + activations


def _prefills(model: CostModel, card: ModelCard, device: str, dtype: str, tp: int, workload: Workload):
    """(prompts per chunk, seconds of the chunk) for every chunk size, largest (cheapest per prompt) first."""
    found = []
    for chunk in reversed(_chunks(workload)):
        kernels = prefill_kernels(card, workload.input_tokens, batch=chunk, dtype=dtype, tp=tp)
        found.append((chunk, phase_time(model, device, kernels, dtype, tp).seconds))
    return found


def _pick_chunk(prefills, ttft_budget_s: float | None):
    """The largest chunk that starts a token within the budget (the smallest when none does)."""
    for chunk, seconds in prefills:
        if ttft_budget_s is None or seconds <= ttft_budget_s:
            return chunk, seconds
    return prefills[-1]


def _decode_step(model: CostModel, card: ModelCard, device: str, dtype: str, tp: int, batch: int, workload: Workload) -> float:
    context = workload.input_tokens + workload.output_tokens // 2
    return phase_time(model, device, decode_kernels(card, context, batch=batch, dtype=dtype, tp=tp), dtype, tp).seconds


def _tp_degrees(card: ModelCard, tp_degrees) -> list[int]:
    return [tp for tp in tp_degrees if card.num_heads % tp == 0]


def _best(candidates: list[_Candidate]) -> tuple[_Candidate | None, str]:
    """The feasible candidate with the most output per device, and the limit that stops its next batch."""
    feasible = [c for c in candidates if not c.violates]
    if not feasible:
        return None, ""
    best = max(feasible, key=lambda c: (c.per_device, -c.tp, -c.batch))
    larger = [c for c in candidates if c.tp == best.tp and c.batch > best.batch]
    if not larger:
        return best, "largest batch searched"
    if larger[0].violates:
        return best, larger[0].violates
    return best, "throughput saturates"


def _limits(c: _Candidate, workload: Workload, usable_gb: float) -> _Candidate:
    if c.memory_gb > usable_gb:
        c.violates = "memory"
    elif workload.ttft_s is not None and c.ttft_s > workload.ttft_s:
        c.violates = f"TTFT ≤ {workload.ttft_s * 1000:g} ms"
    elif workload.tbt_s is not None and c.tbt_s > workload.tbt_s:
        c.violates = f"TBT ≤ {workload.tbt_s * 1000:g} ms"
    return c


def _decode_candidates(model, card, device, dtype, workload, tp_degrees, *, prefill_share: bool) -> list[_Candidate]:
    """Per (tp, batch): decode-side figures; with `prefill_share`, prefill runs on the same devices in between."""
    profile = model.profile(device)
    usable = USABLE_MEMORY_FRACTION * profile.memory_gb
    context = workload.input_tokens + workload.output_tokens / 2
    found = []
    for tp in _tp_degrees(card, tp_degrees):
        prefills = _prefills(model, card, device, dtype, tp, workload) if prefill_share else [(0, 0.0)]
        stalled = 0  # batches past saturation: stop early, they only cost time
        previous = 0.0
        for batch in BATCHES:
            decode = _decode_step(model, card, device, dtype, tp, batch, workload)
            budget = None if workload.ttft_s is None else workload.ttft_s - decode
            chunk, chunk_s = _pick_chunk(prefills, budget)
            memory = _memory_gb(card, dtype, tp, batch, context, chunk, workload.input_tokens)
            if memory > usable:
                found.append(_Candidate(tp, batch, 0.0, 0.0, 0.0, 0.0, memory, "memory"))
                break
            step = decode + (batch / workload.output_tokens * chunk_s / chunk if chunk else 0.0)
            total = batch / step
            c = _limits(_Candidate(tp, batch, chunk_s + decode, step, total / tp, total, memory), workload, usable)
            found.append(c)
            if c.violates:
                break
            stalled = stalled + 1 if total < previous * (1 + SATURATION_GAIN) else 0
            previous = max(previous, total)
            if stalled >= 2:
                break
    return found


def max_throughput(
    model: CostModel, card: ModelCard, device: str, *, dtype: str, workload: Workload, tp_degrees=TP_DEGREES,
) -> ServingPoint:
    """The most output tokens/s per device serving `card` on `device` alone (prefill and decode sharing it)."""
    check_request(card, 1, 1, workload.input_tokens, workload.output_tokens)
    candidates = _decode_candidates(model, card, device, dtype, workload, tp_degrees, prefill_share=True)
    best, binding = _best(candidates)
    if best is None:
        raise HetagentError(_why_none(card, device, dtype, workload, candidates))
    return ServingPoint(card.name, dtype, device, best.tp, best.batch, best.ttft_s, best.tbt_s, best.total,
                        best.per_device, binding, best.memory_gb)


def max_throughput_disaggregated(
    model: CostModel, card: ModelCard, prefill_device: str, decode_device: str, *, dtype: str, workload: Workload,
    tp_degrees=TP_DEGREES,
) -> ServingPoint:
    """The most output tokens/s per device of a balanced prefill::decode fleet."""
    check_request(card, 1, 1, workload.input_tokens, workload.output_tokens)
    # prefill side: seconds per prompt on tp devices, subject to TTFT (chunk + KV transfer) and memory
    prefill_options = []
    usable_p = USABLE_MEMORY_FRACTION * model.profile(prefill_device).memory_gb
    for tp in _tp_degrees(card, tp_degrees):
        for chunk, chunk_s in _prefills(model, card, prefill_device, dtype, tp, workload):
            memory = _memory_gb(card, dtype, tp, chunk, workload.input_tokens, chunk, workload.input_tokens)
            kv = chunk * workload.input_tokens * card.kv_bytes_per_token(dtype) / tp
            ttft = chunk_s + model.transfer_time(prefill_device, decode_device, kv).seconds
            if memory <= usable_p and (workload.ttft_s is None or ttft <= workload.ttft_s):
                prefill_options.append((tp * chunk_s / chunk, tp, chunk, ttft))
    if not prefill_options:
        raise HetagentError(f"{card.name} {dtype} on {prefill_device}: no TP degree prefills one prompt of "
                            f"{workload.input_tokens} tokens within the TTFT limit and memory")
    prefill_device_s, prefill_tp, chunk, ttft = min(prefill_options)
    decode = _decode_candidates(model, card, decode_device, dtype, workload, tp_degrees, prefill_share=False)
    for c in decode:  # per device now counts the prefill devices that feed it
        if not c.violates:
            decode_device_s = workload.output_tokens * c.tp / c.total
            c.per_device = workload.output_tokens / (prefill_device_s + decode_device_s)
    best, binding = _best(decode)
    if best is None:
        raise HetagentError(_why_none(card, decode_device, dtype, workload, decode))
    decode_device_s = workload.output_tokens * best.tp / best.total
    return ServingPoint(
        card.name, dtype, f"{prefill_device}::{decode_device}", best.tp, best.batch, ttft, best.tbt_s,
        best.per_device * (best.tp + best.tp * prefill_device_s / decode_device_s), best.per_device,
        f"decode: {binding}", best.memory_gb, prefill_tp, chunk, prefill_device_s / decode_device_s,
    )


def _why_none(card: ModelCard, device: str, dtype: str, workload: Workload, candidates: list[_Candidate]) -> str:
    fitting = [c for c in candidates if c.violates != "memory"]
    if not fitting:
        return f"{card.name} {dtype} does not fit on {device} at any TP degree searched with one sequence in flight"
    best = min(fitting, key=lambda c: c.tbt_s)
    return (f"{card.name} {dtype} on {device}: no configuration meets the limits; the closest, tp {best.tp} batch "
            f"{best.batch}, reaches TTFT {best.ttft_s * 1000:.1f} ms and TBT {best.tbt_s * 1000:.2f} ms ({best.violates})")
