"""Serving one model on one device type: prefill time, TTFT, time between tokens, memory, and what bounds it.

Times are sums over the kernels of `hetagent.models.kernels`, each timed by a `CostModel`; a decode step is
timed at the mean context of the request (prompt + half the output), where the attention term is exactly its
average over the output. A pass whose working set (the bytes its kernels move) fits in RESIDENT_SHARE of the
device's last-level cache is timed as reading it from there (`Kernel.cached`): the next pass finds it still
there, where a larger model's weights stream from memory every step. Memory fit (`spec/cost-model.md` section
3): weights/tp + KV/tp + activations ≤ 0.9 · capacity, the 10 % left for the runtime, fragmentation and the
allocator.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import asdict, dataclass

from hetagent.cost.model import CostModel
from hetagent.errors import HetagentError
from hetagent.models.card import ModelCard
from hetagent.models.kernels import Kernel, decode_kernels, per_device, prefill_kernels

USABLE_MEMORY_FRACTION = 0.9
# The share of the last-level cache a pass's working set may fill and still be found there by the next pass: the
# rest holds activations, the runtime's own data and whatever else shares the cache, and no replacement policy
# keeps a working set as large as the cache.
RESIDENT_SHARE = 0.5
TP_DEGREES = (1, 2, 4, 8)


@dataclass(frozen=True)
class MemoryUse:
    """Per device, in GB."""

    weights_gb: float
    kv_cache_gb: float
    activations_gb: float
    capacity_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.kv_cache_gb + self.activations_gb

    @property
    def usable_gb(self) -> float:
        return USABLE_MEMORY_FRACTION * self.capacity_gb

    @property
    def fits(self) -> bool:
        return self.total_gb <= self.usable_gb


@dataclass(frozen=True)
class PhaseTime:
    seconds: float
    bound: str  # the resource the largest share of the time waits on
    by_bound: dict[str, float]  # seconds per bound (compute, memory, overhead, link)


@dataclass(frozen=True)
class LLMEstimate:
    model: str
    device: str
    dtype: str
    tp: int
    batch: int
    input_tokens: int
    output_tokens: int
    prefill: PhaseTime  # one prefill of the whole batch
    decode_step: PhaseTime | None  # one decode step at the mean context (None: the model does not decode)
    memory: MemoryUse

    @property
    def ttft_s(self) -> float:
        """Time to first token: the batch's prefill (the first token is sampled from its logits)."""
        return self.prefill.seconds

    @property
    def tbt_s(self) -> float:
        return self.decode_step.seconds if self.decode_step else 0.0

    @property
    def request_s(self) -> float:
        """End-to-end latency of one request: prefill plus the remaining output tokens' decode steps."""
        return self.ttft_s + max(self.output_tokens - 1, 0) * self.tbt_s

    @property
    def output_tokens_per_s(self) -> float:
        """Generated tokens per second for the tp devices together, with prefill and decode on them in turn."""
        return self.batch * self.output_tokens / self.request_s if self.request_s else 0.0

    @property
    def bound(self) -> str:
        """What bounds the request as a whole: the binding resource of the phase that takes longer."""
        decode_total = max(self.output_tokens - 1, 0) * self.tbt_s
        return self.prefill.bound if self.prefill.seconds >= decode_total or not self.decode_step else self.decode_step.bound

    def to_dict(self) -> dict:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("prefill", "decode_step", "memory")},
            "prefill_s": self.prefill.seconds,
            "prefill_bound": self.prefill.bound,
            "ttft_s": self.ttft_s,
            "tbt_s": self.tbt_s,
            "decode_bound": self.decode_step.bound if self.decode_step else None,
            "request_s": self.request_s,
            "output_tokens_per_s": self.output_tokens_per_s,
            "bound": self.bound,
            "memory": {**asdict(self.memory), "total_gb": self.memory.total_gb, "usable_gb": self.memory.usable_gb},
            "fits": self.memory.fits,
        }


def memory_use(card: ModelCard, capacity_gb: float, dtype: str, tp: int, batch: int, context: int, prompt: int) -> MemoryUse:
    """Per device: its share of the weights, of `batch` KV caches of `context` tokens (KV heads replicate when tp
    exceeds their number), and the working set of a prefill over `batch` prompts of `prompt` tokens."""
    kv_share = per_device(card.num_kv_heads, tp) / card.num_kv_heads
    kv = batch * (context * card.kv_bytes_per_token(dtype) + card.cross_kv_bytes(dtype)) * kv_share
    activations = card.activation_bytes(batch * prompt, dtype, tp, sequences=batch)
    return MemoryUse(card.weight_bytes(dtype) / tp / 1e9, kv / 1e9, activations / 1e9, capacity_gb)


def phase_time(model: CostModel, device: str, kernels: list[Kernel], dtype: str, tp: int) -> PhaseTime:
    cache = model.cache_bytes(device)
    if cache and sum(k.total_bytes for k in kernels) <= RESIDENT_SHARE * cache:
        kernels = [dataclasses.replace(k, cached=True) for k in kernels]
    by_bound: dict[str, float] = defaultdict(float)
    for kernel in kernels:
        timed = model.kernel_time(device, kernel, dtype, tp)
        by_bound[timed.bound] += timed.seconds * kernel.count
    total = sum(by_bound.values())
    return PhaseTime(total, max(by_bound, key=by_bound.get), dict(by_bound))


def check_request(card: ModelCard, tp: int, batch: int, input_tokens: int, output_tokens: int) -> None:
    for name, value in (("tp", tp), ("batch", batch), ("input-tokens", input_tokens)):
        if not isinstance(value, int) or value <= 0:
            raise HetagentError(f"--{name} = {value!r} must be a positive integer")
    if output_tokens < 0 or (card.generative and output_tokens == 0):
        raise HetagentError(f"--output-tokens = {output_tokens!r} must be a positive integer for {card.kind} model {card.name!r}")
    if card.num_heads % tp:
        raise HetagentError(f"--tp {tp} must divide the {card.num_heads} attention heads of {card.name!r}")


def estimate_llm(
    model: CostModel, card: ModelCard, device: str, *, dtype: str, tp: int, batch: int, input_tokens: int,
    output_tokens: int,
) -> LLMEstimate:
    """Prefill, decode and memory of serving `batch` requests of `card` on `tp` devices of type `device`."""
    check_request(card, tp, batch, input_tokens, output_tokens)
    profile = model.profile(device)
    context = input_tokens + output_tokens
    memory = memory_use(card, profile.memory_gb, dtype, tp, batch, context, input_tokens)
    prefill = phase_time(model, device, prefill_kernels(card, input_tokens, batch=batch, dtype=dtype, tp=tp), dtype, tp)
    decode = None
    if card.generative:
        mean_context = input_tokens + output_tokens // 2
        decode = phase_time(model, device, decode_kernels(card, mean_context, batch=batch, dtype=dtype, tp=tp), dtype, tp)
    return LLMEstimate(card.name, device, dtype, tp, batch, input_tokens, output_tokens, prefill, decode, memory)


def require_some_fit(card: ModelCard, model: CostModel, device: str, dtype: str, tp_degrees=TP_DEGREES) -> None:
    """Raise a clear error when the weights alone fit on no TP degree of this device."""
    profile = model.profile(device)
    largest = max(tp_degrees)
    need = memory_use(card, profile.memory_gb, dtype, largest, 1, 1, 1)
    if not need.fits:
        raise HetagentError(
            f"model {card.name!r} in {dtype} does not fit on {device} at any TP degree up to {largest}: it needs "
            f"{card.weight_bytes(dtype) / 1e9:.1f} GB of weights, {need.total_gb:.1f} GB per device at tp {largest}, "
            f"and one {device} has {need.usable_gb:.1f} GB usable ({USABLE_MEMORY_FRACTION:.0%} of "
            f"{profile.memory_gb:g} GB)"
        )
