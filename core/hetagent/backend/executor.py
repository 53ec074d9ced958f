"""The executor interface: what a backend's executor class implements (`spec/plugin-api.md`, section 11).

An executor that searches memory stores also offers `write_index(vectors, directory) -> file name` (a static
method): `hetagent index` asks it to write the vector index in the format it reads (`hetagent.backend.stores`).

A worker process owns one device. For each granular op placed on it, the worker finds the executor a backend
declared for that op and device (`ExecutorSpec`), imports its `factory` and builds it once with the
`WorkerContext`. It then hands it `Call`s ordered by deadline:

- one-shot ops: `run(calls)` gets up to `max_batch(call)` compatible calls (same op and kernel) and returns one
  `Outcome` (or an Exception, which fails only that call's request) per call, in order;
- stepped ops (`stepped_ops`, e.g. `llm.decode`): `join(call)` adds a sequence while `free_slots(call) > 0`,
  and each `step()` advances every joined sequence by one step and returns the calls that finished. This is
  continuous batching: sequences join and leave between steps. An executor that can say which tokens a joined
  call has generated so far implements `progress(call) -> sequence of token ids` (optional): the worker reports
  them after each step for calls with `stream` set (the answer's decode of a streamed request), and only then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # text imports numpy: `import hetagent.backend` stays light
    from hetagent.backend.text import Sampling

# the ops of model functions: what the shared executor (`hetagent.backend.llm`) runs on any kernel device
MODEL_FUNCTION_OPS = ("llm.prefill", "llm.decode", "memory.embed")


@dataclass(frozen=True)
class KernelRef:
    """A compiled model function: what an executor needs to load and call it."""

    symbol: str
    artifact: str  # absolute path of the .vmfb (or other artifact): with the symbol, what identifies it
    function: dict = field(compare=False)  # ModelFunction fields: model, function, dtype, batch, prompt, capacity
    weights: tuple[str, ...] = field(compare=False)  # weight names in call order


@dataclass(frozen=True)
class Call:
    task: int  # the engine's id for this dispatch; a retry gets a new one
    request: int
    op: str
    label: str
    attrs: dict
    inputs: tuple
    kernel: KernelRef | None
    deadline: float  # time.monotonic() seconds: the request's end-to-end deadline
    seed: int  # the request's seed (sampling is seeded by seed and label, never by worker)
    attempt: int = 1
    sent: float = 0.0  # time.monotonic() when the engine sent it: queue time counts from here
    stream: bool = False  # report this stepped call's tokens after each step (`progress`), not only at its end
    sampling: Sampling | None = None  # LLM ops: the request's sampling parameters (None: the defaults)
    extend: KernelRef | None = None  # llm.prefill: the kernel that prefills past a cached prefix (prefix cache)


@dataclass(frozen=True)
class Outcome:
    values: tuple  # one per op result
    token_times: tuple[float, ...] = ()  # time.monotonic() of each token produced (LLM ops)
    kv_s: float = 0.0  # time spent moving KV caches between the device and the exchange layout (report)
    finish_reason: str | None = None  # llm.decode: why generation ended, "stop" or "length"


@dataclass(frozen=True)
class WorkerContext:
    worker: str  # "host-cpu:0"
    device: str  # the device profile it runs
    cores: tuple[int, ...]  # the CPUs it is pinned to (all of them when not partitioned)
    kernels: tuple[KernelRef, ...]  # kernels of the ops placed here: load them before the first call
    run_id: str  # prefix for names this run creates (shared-memory segments)
    cache_dir: str
    model_dir: str | None = None
    corpus: str | None = None
    stores: dict[str, str] = field(default_factory=dict)  # memory store -> index directory
    http_tools: dict[str, str] = field(default_factory=dict)  # tool -> URL
    temperature: float = 0.0
    # which of several devices of its profile this worker owns (GPUs): from the detection that found it
    device_index: int | None = None
    device_uuid: str = ""
    # llm.prefill: bytes of KV the worker keeps for recent prompt prefixes (0: no prefix cache)
    prefix_cache_bytes: int = 0


class Executor(Protocol):
    stepped_ops: frozenset[str]

    def __init__(self, context: WorkerContext) -> None: ...

    def max_batch(self, call: Call) -> int: ...

    def run(self, calls: list[Call]) -> list[Outcome | Exception]: ...

    def free_slots(self, call: Call) -> int: ...

    def join(self, call: Call) -> None: ...

    def step(self) -> list[tuple[Call, Outcome | Exception]]: ...

    def active(self) -> int: ...

    # optional, stepped ops: `progress(call)` (tokens so far, for streaming); `leave(call) -> bool` (drop a joined
    # call whose request was cancelled)


class OneShotExecutor:
    """Base for executors with no stepped ops: one call at a time unless a subclass batches."""

    stepped_ops: frozenset[str] = frozenset()

    def __init__(self, context: WorkerContext) -> None:
        self.context = context

    def max_batch(self, call: Call) -> int:
        return 1

    def run(self, calls: list[Call]) -> list[Outcome | Exception]:
        results: list[Any] = []
        for call in calls:
            try:
                results.append(Outcome(self.run_one(call)))
            except Exception as exc:  # one request's bad input or failing tool must not stop the worker
                results.append(exc)
        return results

    def run_one(self, call: Call) -> tuple:
        raise NotImplementedError

    def free_slots(self, call: Call) -> int:
        return 0

    def join(self, call: Call) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no stepped ops")

    def step(self) -> list:
        return []

    def active(self) -> int:
        return 0
