"""The model-function executor every backend shares: prefill, decode (continuous batching) and embed on
compiled kernels.

The executor is the same on every device; only the kernel device under it differs. `LLMExecutor` runs on
`IreeDevice` with the class's HAL `driver` (`local-task` for the host CPU, `cuda`, `hip`): a backend whose
artifacts are IREE modules subclasses it and names its driver, nothing else. A backend with another runtime
overrides `make_device` with an object of the same shape (`function`, `weights`, `upload`, `to_host`, `card`),
as hetagent-gaudi does for torch graphs on the HPU. Each kernel is loaded once per worker; each model's weights
are uploaded once and stay resident on the device, passed to every call as arguments (the kernels hold no
weights, `spec/compiler.md`); a decode batch's KV cache stays on the device between steps.

Text goes in and out through the model's tokenizer (`hetagent.backend.tokenizer`: a checkpoint's own, with its
chat template; the byte tokenizer for stand-ins); each call samples as its request asks (`Call.sampling`: the
OpenAI parameters), else as the model's generation config and the server's temperature say.

- prefill: a batch of prompts (token ids, the tail kept when longer than the kernel's prompt capacity) ->
  the first token of each, sampled, and its KV cache staged device -> host -> shared memory in the
  `spec/kv-format.md` layout (the handle records how long that took).
- prefix cache (`context.prefix_cache_bytes` > 0, `hetagent.backend.prefix_cache`): a prompt whose longest cached
  prefix saves work runs the prefill's `extend` kernel (`Call.extend`) over that prefix's KV, chunk by chunk, and
  prefills only the rest; every prompt's full blocks are kept afterwards. The result says how many prompt tokens
  came from the cache (`cached`).
- decode: sequences join a kernel's batch slots between steps (their cache read from shared memory into the
  slot and uploaded: host -> device, timed) and leave when they reach their token budget (the IR's output_tokens, capped by the request's max_tokens), an
  end-of-sequence id, a stop string (the text ends before it) or the cache's capacity; the text is a `str`, the
  outcome's `finish_reason` says why it ended; `progress` tells the tokens a sequence has so far (streamed
  answers).
- embed: a batch of texts -> unit-length embeddings (a Llama decoder's, or a BERT encoder's: its tokenizer adds
  [CLS] ... [SEP]; text longer than the kernel's prompt capacity keeps its head).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from hetagent.backend import kv_format, text
from hetagent.backend.executor import Call, Outcome, WorkerContext
from hetagent.backend.iree import IreeDevice
from hetagent.backend.prefix_cache import PrefixCache
from hetagent.backend.tokenizer import ByteTokenizer, tokenizer_for
from hetagent.backend.transforms import render


@dataclass
class _Sequence:
    call: Call
    slot: int
    position: int  # where the next fed token goes
    token: int  # the next token to feed
    tokens: list[int]
    budget: int  # tokens still to generate
    seed: int
    sampling: text.Sampling
    tokenizer: ByteTokenizer
    times: list[float] = field(default_factory=list)
    kv_load_s: float = 0.0  # reading its cache in: shared memory -> host -> device
    finish_reason: str = "length"

    def ended(self) -> bool:
        """Whether the sequence has ended by its own tokens: an end-of-sequence id or a stop string."""
        if self.tokens[-1] in self.tokenizer.eos_ids:
            self.finish_reason = "stop"
        elif self.sampling.stop and text.cut_at_stop(self.tokenizer.decode(self.tokens), self.sampling.stop) is not None:
            self.finish_reason = "stop"
        return self.finish_reason == "stop"

    def outcome(self) -> Outcome:
        decoded = self.tokenizer.decode(self.tokens)
        cut = text.cut_at_stop(decoded, self.sampling.stop) if self.sampling.stop else None
        return Outcome((decoded if cut is None else cut,), tuple(self.times), self.kv_load_s, self.finish_reason)


def sampling_of(call: Call, context: WorkerContext, tokenizer: ByteTokenizer) -> text.Sampling:
    """A call's sampling: the request's values, else the model's generation defaults, else the server's."""
    return (call.sampling or text.Sampling()).merged(tokenizer.defaults).merged(text.Sampling(context.temperature))


def draw(logits, sampling: text.Sampling, tokenizer: ByteTokenizer, seed: int, step: int) -> int:
    return text.sample(logits, sampling.temperature, seed, step, top_p=sampling.top_p, top_k=sampling.top_k,
                       vocab=tokenizer.vocab, banned=tokenizer.banned)


class _DecodeBatch:
    """One decode kernel's batch slots and its cache, resident between steps."""

    def __init__(self, device, kernel):
        self.kernel = kernel
        self.function = device.function(kernel)
        self.weights = device.weights(kernel)
        fn = kernel.function
        self.batch, self.capacity = fn["batch"], fn["capacity"]
        self.device = device
        self.kv = None  # the device array the last step returned (None until the first join)
        self.host_kv: np.ndarray | None = None
        self.slots: dict[int, _Sequence] = {}

    def join(self, sequence: _Sequence, handle: kv_format.KVHandle) -> None:
        if self.host_kv is None:
            model = self.device.card(self.kernel)
            self.host_kv = np.zeros((model.num_layers, 2, self.batch, model.num_kv_heads, self.capacity,
                                     model.head_size), dtype=kv_format.NUMPY_DTYPES[self.kernel.function["dtype"]])
        elif self.kv is not None:
            self.host_kv = self.device.to_host(self.kv)  # the other slots' caches as the last step left them
        start = time.perf_counter()
        kv_format.read_into(handle, self.host_kv, sequence.slot)
        self.kv = self.device.upload(self.host_kv)
        sequence.kv_load_s = time.perf_counter() - start
        self.slots[sequence.slot] = sequence

    def step(self) -> list[_Sequence]:
        tokens = np.zeros(self.batch, dtype=np.int64)
        positions = np.zeros(self.batch, dtype=np.int64)
        for slot, s in self.slots.items():
            tokens[slot], positions[slot] = s.token, s.position
        logits, self.kv = self.function(tokens, positions, self.kv, *self.weights)
        logits = self.device.to_host(logits)
        now = time.monotonic()
        # the greedy slots in one argmax; one kernel runs one model, so its slots share one tokenizer
        greedy = [slot for slot, s in self.slots.items() if s.sampling.temperature <= 0]
        picked = {}
        if greedy:
            tokenizer = self.slots[greedy[0]].tokenizer
            picked = dict(zip(greedy, text.greedy(logits[greedy], vocab=tokenizer.vocab,
                                                  banned=tokenizer.banned).tolist()))
        finished = []
        for slot, s in list(self.slots.items()):
            s.token = picked[slot] if slot in picked else draw(logits[slot], s.sampling, s.tokenizer, s.seed,
                                                               len(s.tokens))
            s.tokens.append(s.token)
            s.times.append(now)
            s.position += 1
            s.budget -= 1
            if s.ended() or s.budget <= 0 or s.position >= self.capacity:  # the slot is free for the next
                finished.append(self.slots.pop(slot))
        return finished


class LLMExecutor:
    stepped_ops = frozenset({"llm.decode"})
    driver = "local-task"  # the IREE HAL driver of `make_device`: a backend's subclass names its own

    def __init__(self, context: WorkerContext):
        self.context = context
        self.device = self.make_device(context)
        self.batches: dict[str, _DecodeBatch] = {}
        self.done: list[tuple[Call, Outcome | Exception]] = []  # finished at join: reported by the next step
        self.prefixes = PrefixCache(context.prefix_cache_bytes) if context.prefix_cache_bytes > 0 else None

    def make_device(self, context: WorkerContext):
        """The kernel device this executor runs on."""
        return IreeDevice(context, self.driver)

    def max_batch(self, call: Call) -> int:
        return call.kernel.function["batch"] if call.kernel else 1

    def run(self, calls: list[Call]) -> list:
        if calls[0].kernel is None:
            return [RuntimeError(f"{c.label}: no compiled kernel for {c.op} (see the compile manifest's no_kernel)")
                    for c in calls]
        run = self._prefill if calls[0].op == "llm.prefill" else self._embed
        return run(calls)

    def _ids(self, calls: list[Call]) -> list[list[int]]:
        """Each call's token ids within the kernel's prompt capacity: a prompt's tail, a text to embed's head."""
        fn = calls[0].kernel.function
        tokenizer = tokenizer_for(fn["model"])
        prompts = []
        for call in calls:
            if call.op == "llm.prefill":  # a prompt: the chat template applies; a long one keeps its tail
                ids = tokenizer.prompt_ids(call.inputs, call.attrs.get("system"))[-fn["prompt"]:]
            else:  # text to embed, as it is; a long one keeps its head (as encoders' tokenizers truncate)
                ids = tokenizer.encode("\n\n".join(render(v) for v in call.inputs))[: fn["prompt"]]
            prompts.append(list(ids))
        return prompts

    def _padded(self, kernel, prompts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        fn = kernel.function
        tokens = np.full((fn["batch"], fn["prompt"]), text.PAD, dtype=np.int64)
        lengths = np.ones(fn["batch"], dtype=np.int64)
        for i, ids in enumerate(prompts):
            tokens[i, : len(ids)] = ids
            lengths[i] = len(ids)
        return tokens, lengths

    def _prefill(self, calls: list[Call]) -> list:
        kernel = calls[0].kernel
        fn = kernel.function
        seed = f"{fn['model']}/{fn['dtype']}"  # a prefix's KV is the same whatever the cache's capacity
        prompts = self._ids(calls)
        # per call: logits [V], kv [L, 2, B, Hkv, S, D] and its batch index, prompt tokens from the cache, when
        # its first token was ready, and the time staging its cache to the host
        ran: list = [None] * len(calls)
        fresh = list(range(len(calls)))
        if self.prefixes is not None and calls[0].extend is not None:
            fresh = []
            for i, (call, ids) in enumerate(zip(calls, prompts)):
                cached, blocks = self.prefixes.lookup(seed, ids, len(ids) - 1)  # the last token is always run
                chunk = call.extend.function["prompt"]
                if cached and -(-(len(ids) - cached) // chunk) * chunk < fn["prompt"]:  # cheaper than a prefill
                    ran[i] = self._extend(call.extend, ids, cached, blocks)
                else:
                    fresh.append(i)
        if fresh:
            tokens, lengths = self._padded(kernel, [prompts[i] for i in fresh])
            logits, kv = self.device.function(kernel)(tokens, lengths, *self.device.weights(kernel))
            now, staged = time.monotonic(), time.perf_counter()
            logits, kv = self.device.to_host(logits), self.device.to_host(kv)
            to_host_s = (time.perf_counter() - staged) / len(fresh)  # one copy serves the batch: each its share
            for b, i in enumerate(fresh):
                ran[i] = (logits[b], kv, b, 0, now, to_host_s)
        outcomes = []
        tokenizer = tokenizer_for(fn["model"])
        for call, ids, (logits, kv, b, cached, now, to_host_s) in zip(calls, prompts, ran):
            sampling = sampling_of(call, self.context, tokenizer)
            first = draw(logits, sampling, tokenizer, text.stream_seed(call.seed, call.label), 0)
            start = time.perf_counter()
            handle = kv_format.write(kv, len(ids), model=fn["model"], dtype=fn["dtype"], batch_index=b,
                                     segment=kv_format.segment_name(self.context.run_id, call.task),
                                     device=self.context.device)
            handle = dataclasses.replace(handle, store_s=to_host_s + time.perf_counter() - start)
            if self.prefixes is not None:
                self.prefixes.insert(seed, ids, kv[:, :, b])
            outcomes.append(Outcome((handle, {"token": first, "position": len(ids), "cached": cached}), (now,),
                                    handle.store_s))
        return outcomes

    def _extend(self, kernel, ids: list[int], cached: int, blocks: list[np.ndarray]) -> tuple:
        """Prefill ids[cached:] over the cached prefix's KV, chunk by chunk on the extend kernel; as `_prefill`
        records a call: the last token's logits, the whole cache [L, 2, 1, Hkv, S, D], ..., the staging time."""
        fn, model = kernel.function, self.device.card(kernel)
        host = np.zeros((model.num_layers, 2, 1, model.num_kv_heads, fn["capacity"], model.head_size),
                        dtype=kv_format.NUMPY_DTYPES[fn["dtype"]])
        host[:, :, 0, :, :cached, :] = np.concatenate(blocks, axis=3)
        kv, function, weights = self.device.upload(host), self.device.function(kernel), self.device.weights(kernel)
        chunk = fn["prompt"]
        for start in range(cached, len(ids), chunk):
            part = ids[start:start + chunk]
            tokens = np.full((1, chunk), text.PAD, dtype=np.int64)
            tokens[0, :len(part)] = part
            logits, kv = function(tokens, np.array([len(part)], dtype=np.int64), np.array([start], dtype=np.int64),
                                  kv, *weights)
        now, staged = time.monotonic(), time.perf_counter()
        logits, kv = self.device.to_host(logits)[0], self.device.to_host(kv)
        return logits, kv, 0, cached, now, time.perf_counter() - staged

    def _embed(self, calls: list[Call]) -> list:
        kernel = calls[0].kernel
        tokens, lengths = self._padded(kernel, self._ids(calls))
        embedding = self.device.to_host(self.device.function(kernel)(tokens, lengths, *self.device.weights(kernel)))
        return [Outcome((embedding[i].astype(np.float32),)) for i in range(len(calls))]

    # ------------------------------------------------------------------ continuous batching of decode steps

    def _batch(self, call: Call) -> _DecodeBatch:
        if call.kernel.symbol not in self.batches:
            self.batches[call.kernel.symbol] = _DecodeBatch(self.device, call.kernel)
        return self.batches[call.kernel.symbol]

    def free_slots(self, call: Call) -> int:
        if call.kernel is None:
            return 1  # joins only to fail at once
        batch = self._batch(call)
        return batch.batch - len(batch.slots)

    def join(self, call: Call) -> None:
        if call.kernel is None:
            self.done.append((call, RuntimeError(f"{call.label}: no compiled decode kernel (see the manifest)")))
            return
        handle, start = call.inputs
        batch = self._batch(call)
        slot = min(set(range(batch.batch)) - set(batch.slots))
        tokenizer = tokenizer_for(call.kernel.function["model"])
        sampling = sampling_of(call, self.context, tokenizer)
        wanted = int(call.attrs.get("output_tokens", 256))  # the IR's budget caps the request's max_tokens
        if sampling.max_tokens is not None:
            wanted = min(wanted, sampling.max_tokens)
        budget = min(wanted - 1, batch.capacity - start["position"])
        sequence = _Sequence(call, slot, start["position"], start["token"], [start["token"]], budget,
                             text.stream_seed(call.seed, call.label), sampling, tokenizer)
        if sequence.ended() or budget <= 0:
            self.done.append((call, sequence.outcome()))
            return
        try:
            batch.join(sequence, handle)
        except (ValueError, FileNotFoundError) as exc:  # a cache that does not fit, or is gone: this request only
            self.done.append((call, exc))

    def step(self) -> list:
        finished, self.done = self.done, []
        for batch in self.batches.values():
            if batch.slots:
                finished += [(s.call, s.outcome()) for s in batch.step()]
        return finished

    def progress(self, call: Call) -> list[int]:
        """The tokens a joined decode has generated so far, the prefill's first one included: the ids whose
        detokenised text its result will be (the worker streams them for calls with `stream`)."""
        if call.kernel is not None:
            for sequence in self._batch(call).slots.values():
                if sequence.call.task == call.task:
                    return sequence.tokens
        return []

    def leave(self, call: Call) -> bool:
        """Drop a joined decode before its end (its request was cancelled): its slot is free for the next."""
        if call.kernel is not None:
            batch = self._batch(call)
            for slot, sequence in batch.slots.items():
                if sequence.call.task == call.task:
                    del batch.slots[slot]
                    return True
        for i, (done, _) in enumerate(self.done):
            if done.task == call.task:
                del self.done[i]
                return True
        return False

    def active(self) -> int:
        return sum(len(b.slots) for b in self.batches.values()) + len(self.done)
