"""The agent dialect as data: one declarative table drives the builder, the verifier and `spec/dialect.md`.

IREE 3.13 ships no IRDL, so agent ops are unregistered MLIR ops in generic form, typed with opaque `!agent.*`
types. The table is shaped like IRDL (operands and results with type constraints, attributes, regions) so it
maps one to one onto `irdl.operation` definitions once IRDL is available.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hetagent.dtypes import DTYPES

# ------------------------------------------------------------------------------------------------ types

AGENT_TYPES: dict[str, str] = {
    "!agent.text": "UTF-8 text: a prompt, a transcript, a response",
    "!agent.audio": "PCM audio samples with their sample rate",
    "!agent.tokens": "token ids (a prompt, or tokens sampled by prefill)",
    "!agent.kv": "an LLM KV cache, exchanged in the layout of spec/kv-format.md",
    "!agent.embedding": "dense embedding vectors",
    "!agent.docs": "documents retrieved from a memory store, with scores",
    "!agent.json": "a structured value: tool arguments and results, routing decisions",
    "!agent.tensor": "a dense activation tensor (hidden states inside MoE / tensor-parallel ops)",
}
ANY = tuple(AGENT_TYPES)
CONTEXT = ("!agent.text", "!agent.docs", "!agent.json")  # what an LLM can be prompted with
TOOL_RESULT = ("!agent.text", "!agent.json", "!agent.docs")
PAYLOADS = tuple(t.removeprefix("!agent.") for t in AGENT_TYPES)

# ------------------------------------------------------------------------------------------------ table records

ATTR_KINDS = {
    "string": "a string, e.g. \"x\"",
    "int": "an integer, e.g. 4 : i64",
    "float": "a number, e.g. 2.5 : f64 (integers are accepted)",
    "bool": "true or false",
    "symbol": "a symbol reference, e.g. @prefill_fn",
    "dtype": "one of " + ", ".join(f'"{d}"' for d in DTYPES),
    "enum": "one of the listed strings",
    "tokens": "a token count (512 : i64) or a distribution {mean = 512.0, std = 64.0, dist = \"lognormal\"}",
    "placement": "{device = \"h100-sxm\", backend = \"cuda\", replicas = 1 : i64, tp = 1 : i64, batch = 8 : i64}",
}
TOKEN_DISTRIBUTIONS = ("normal", "lognormal", "uniform", "exponential", "constant")


@dataclass(frozen=True)
class Operand:
    name: str
    types: tuple[str, ...]
    variadic: bool = False  # zero or more (at least `min` when variadic)
    min: int = 0
    doc: str = ""


@dataclass(frozen=True)
class Result:
    name: str
    types: tuple[str, ...]
    variadic: bool = False
    min: int = 0
    doc: str = ""


@dataclass(frozen=True)
class Attr:
    name: str
    kind: str  # a key of ATTR_KINDS
    required: bool = False
    doc: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()  # for kind "enum"


@dataclass(frozen=True)
class Region:
    name: str
    terminator: str
    doc: str = ""


@dataclass(frozen=True)
class OpDef:
    name: str
    summary: str
    level: str  # "high" (authored), "granular" (after decompose), "structural" (graphs, control, terminators)
    operands: tuple[Operand, ...] = ()
    results: tuple[Result, ...] = ()
    attrs: tuple[Attr, ...] = ()
    regions: tuple[Region, ...] = ()
    terminator: bool = False
    decomposes_to: tuple[str, ...] = ()
    description: str = ""
    example: str = ""

    @property
    def dialect(self) -> str:
        return self.name.split(".", 1)[0]

    def attr(self, name: str) -> Attr | None:
        for attr in self.all_attrs:
            if attr.name == name:
                return attr
        return None

    @property
    def all_attrs(self) -> tuple[Attr, ...]:
        if self.terminator:
            return self.attrs
        return self.attrs + ((ID_ATTR,) if self.level == "structural" else COMMON_ATTRS)


# Every op but a terminator may carry an id; the compiler gives one to each (hetagent.ir.passes.ids)
ID_ATTR = Attr("id", "string", doc="the op's id, unique in its module: the `name` label, or one the compiler "
                                   "generates; the compile manifest, the runtime's program, run reports and traces "
                                   "name the op by it")
# Every compute op may carry these: a label, its id, its traffic, and (after planning) where it runs.
COMMON_ATTRS = (
    Attr("name", "string", doc="a human-readable label, used in reports and plans"),
    ID_ATTR,
    Attr("bytes_in", "int", min=0, doc="bytes the op reads from its operands (workload descriptor)"),
    Attr("bytes_out", "int", min=0, doc="bytes the op produces"),
    Attr("batch_hint", "int", min=1, doc="how many requests the op is expected to batch"),
    Attr("placement", "placement", doc="set by planning: device class, backend, replicas, TP degree, batch, and on the host CPU optionally `partition` (an integer >= 0: which core partition runs the op)"),
)

# A model id names a directory (weights, caches) and goes into generated IR: letters, digits, '.', '_', '-' only
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MODEL_ATTRS = ("model", "embed_model")

_MODEL = Attr("model", "string", required=True, doc="model id (a model card name, e.g. \"llama-3-8b\")")
_DTYPE = Attr("dtype", "dtype", doc="numeric type the model runs in (default: the model card's)")
_IN = Attr("input_tokens", "tokens", doc="expected prompt length in tokens")
_OUT = Attr("output_tokens", "tokens", doc="expected generated tokens")
_BATCH = Attr("batch", "int", min=1, doc="batch size the op runs at")
_KERNEL = Attr("kernel", "symbol", doc="the func.func compute kernel implementing this op")
_EXTEND = Attr("extend_kernel", "symbol", doc="the func.func that prefills past a cached prefix (the prefix cache)")
_TOOL = Attr("tool", "string", required=True, doc="tool name, as registered in the entry-point group hetagent.tools")
_ENDPOINT = Attr("endpoint", "string", doc="URL of an HTTP tool")
_LATENCY = Attr("latency_ms", "float", min=0, doc="expected tool latency in milliseconds")
_TIMEOUT = Attr("timeout_ms", "float", min=0, doc="time limit for one call, in milliseconds")
_STORE = Attr("store", "string", required=True, doc="memory store (vector index) name")
_EMBED = Attr("embed_model", "string", required=True, doc="embedding model id")
_TOPK = Attr("top_k", "int", min=1, doc="documents to retrieve (default 4)")
_TP = Attr("tp", "int", required=True, min=1, doc="tensor-parallel degree")
_CHANNEL = Attr("channel", "string", required=True, doc="name pairing an xfer.send with its xfer.recv")
_PAYLOAD = Attr("payload", "enum", required=True, choices=PAYLOADS, doc="what crosses the cut")
_PEER = Attr("peer", "string", required=True, doc="the partition (backend) on the other side")


def _ops() -> tuple[OpDef, ...]:
    T, A, K, TOK, E, D, J, X = (f"!agent.{t}" for t in ("text", "audio", "kv", "tokens", "embedding", "docs", "json", "tensor"))
    return (
        # ---------------------------------------------------------------- structure
        OpDef(
            "agent.graph", "An agent: a graph of operations in one region.", "structural",
            attrs=(
                Attr("sym_name", "string", required=True, doc="the agent's name, referenced by agent.call"),
                Attr("sla_ms", "float", min=0, doc="end-to-end latency SLA in milliseconds"),
                Attr("sla_percentile", "float", min=0, max=100, doc="percentile the SLA holds at (default 99)"),
                Attr("description", "string", doc="what the agent does"),
            ),
            regions=(Region("body", "agent.return", "one block; its arguments are the agent's parameters"),),
            description="Operations in the body form a dataflow graph (an MLIR graph region): their order in "
            "the text does not matter, but the dependencies must be acyclic; cycles are written with "
            "control.loop. A graph nested in another is a sub-agent; a top-level graph takes no arguments and "
            "reads its inputs with input.* ops.",
            example='"agent.graph"() ({\n  %q = "input.query"() : () -> !agent.text\n  "agent.return"(%q) : (!agent.text) -> ()\n}) {sym_name = "echo"} : () -> ()',
        ),
        OpDef(
            "agent.call", "Run a sub-agent (an agent.graph) by name.", "structural",
            operands=(Operand("args", ANY, variadic=True, doc="bound to the callee's block arguments"),),
            results=(Result("results", ANY, variadic=True, doc="what the callee's agent.return returns"),),
            attrs=(Attr("callee", "symbol", required=True, doc="sym_name of the called agent.graph"),),
            example='%a = "agent.call"(%q) {callee = @summarise} : (!agent.text) -> !agent.text',
        ),
        OpDef(
            "agent.return", "Terminates an agent.graph and names its outputs.", "structural",
            operands=(Operand("values", ANY, variadic=True),), terminator=True,
            example='"agent.return"(%answer) : (!agent.text) -> ()',
        ),
        # ---------------------------------------------------------------- inputs
        OpDef(
            "input.query", "A text request entering the agent.", "high",
            results=(Result("query", (T,)),),
            attrs=(Attr("tokens", "tokens", doc="expected query length in tokens"),),
            example='%q = "input.query"() {tokens = 64 : i64} : () -> !agent.text',
        ),
        OpDef(
            "input.audio", "An audio request entering the agent.", "high",
            results=(Result("audio", (A,)),),
            attrs=(
                Attr("sample_rate", "int", min=1, doc="samples per second (default 16000)"),
                Attr("duration_s", "float", min=0, doc="expected clip length in seconds"),
            ),
            example='%a = "input.audio"() {sample_rate = 16000 : i64, duration_s = 8.0 : f64} : () -> !agent.audio',
        ),
        # ---------------------------------------------------------------- models
        OpDef(
            "audio.stt", "Speech to text.", "high",
            operands=(Operand("audio", (A,)),), results=(Result("text", (T,)),),
            attrs=(_MODEL, _DTYPE, _OUT, _KERNEL),
            example='%t = "audio.stt"(%a) {model = "whisper-large-v3"} : (!agent.audio) -> !agent.text',
        ),
        OpDef(
            "audio.tts", "Text to speech.", "high",
            operands=(Operand("text", (T,)),), results=(Result("audio", (A,)),),
            attrs=(_MODEL, _DTYPE, Attr("duration_s", "float", min=0, doc="expected output length"), _KERNEL),
            example='%s = "audio.tts"(%t) {model = "kokoro-82m"} : (!agent.text) -> !agent.audio',
        ),
        OpDef(
            "llm.call", "Generate text with an LLM from the given context.", "high",
            operands=(Operand("context", CONTEXT, variadic=True, min=1, doc="prompt pieces, concatenated in order"),),
            results=(Result("response", (T,)),),
            attrs=(_MODEL, _DTYPE, _IN, _OUT, _BATCH, Attr("system", "string", doc="system prompt")),
            decomposes_to=("llm.prefill", "kv.transfer", "llm.decode"),
            description="Decomposes into prefill (compute-bound), a KV-cache transfer, and decode "
            "(memory-bound), which the planner may place on different devices.",
            example='%r = "llm.call"(%q, %docs) {model = "llama-3-8b", dtype = "bf16", input_tokens = 512 : i64, '
            'output_tokens = 256 : i64} : (!agent.text, !agent.docs) -> !agent.text',
        ),
        OpDef(
            "llm.prefill", "Run the prompt through the model: fills the KV cache, samples the first token.", "granular",
            operands=(Operand("context", CONTEXT + (TOK,), variadic=True, min=1),),
            results=(Result("kv", (K,)), Result("first_token", (TOK,))),
            attrs=(_MODEL, _DTYPE, _IN, _BATCH, _KERNEL, _EXTEND),
            example='%kv, %tok = "llm.prefill"(%q) {model = "llama-3-8b", input_tokens = 512 : i64} : '
            "(!agent.text) -> (!agent.kv, !agent.tokens)",
        ),
        OpDef(
            "kv.transfer", "Move a KV cache from the prefill device to the decode device.", "granular",
            operands=(Operand("kv", (K,)),), results=(Result("kv", (K,)),),
            attrs=(Attr("model", "string", doc="model whose cache moves (sizes the transfer)"), _DTYPE, _IN),
            description="A no-op when both ends share a device; otherwise a copy in the spec/kv-format.md layout "
            "over the link between the two devices.",
            example='%kv2 = "kv.transfer"(%kv) {model = "llama-3-8b", input_tokens = 512 : i64} : (!agent.kv) -> !agent.kv',
        ),
        OpDef(
            "llm.decode", "Generate tokens one step at a time from a KV cache.", "granular",
            operands=(Operand("kv", (K,)), Operand("first_token", (TOK,))),
            results=(Result("response", (T,)),),
            attrs=(_MODEL, _DTYPE, _IN, _OUT, _BATCH, _KERNEL),
            example='%r = "llm.decode"(%kv2, %tok) {model = "llama-3-8b", output_tokens = 256 : i64} : '
            "(!agent.kv, !agent.tokens) -> !agent.text",
        ),
        # ---------------------------------------------------------------- tools
        OpDef(
            "tool.invoke", "Call a tool (web search, calculator, an HTTP API) with arguments.", "high",
            operands=(Operand("args", TOOL_RESULT, variadic=True, min=1),),
            results=(Result("result", TOOL_RESULT),),
            attrs=(_TOOL, _LATENCY, _TIMEOUT, _ENDPOINT),
            decomposes_to=("tool.lookup", "tool.compute"),
            example='%s = "tool.invoke"(%r) {tool = "web_search", latency_ms = 300.0 : f64} : (!agent.text) -> !agent.json',
        ),
        OpDef(
            "tool.lookup", "Parse the tool call and resolve its target and arguments (CPU work).", "granular",
            operands=(Operand("args", TOOL_RESULT, variadic=True, min=1),), results=(Result("call", (J,)),),
            attrs=(_TOOL, _ENDPOINT),
            example='%c = "tool.lookup"(%r) {tool = "web_search"} : (!agent.text) -> !agent.json',
        ),
        OpDef(
            "tool.compute", "Execute a resolved tool call.", "granular",
            operands=(Operand("call", (J,)),), results=(Result("result", TOOL_RESULT),),
            attrs=(_TOOL, _LATENCY, _TIMEOUT, _ENDPOINT),
            example='%s = "tool.compute"(%c) {tool = "web_search"} : (!agent.json) -> !agent.json',
        ),
        # ---------------------------------------------------------------- memory
        OpDef(
            "memory.load", "Retrieve the documents of a memory store closest to a query.", "high",
            operands=(Operand("query", (T,)),), results=(Result("docs", (D,)),),
            attrs=(_STORE, _EMBED, _TOPK, _DTYPE),
            decomposes_to=("memory.embed", "memory.search"),
            example='%d = "memory.load"(%q) {store = "handbook", embed_model = "all-minilm-l6-v2", top_k = 4 : i64} : '
            "(!agent.text) -> !agent.docs",
        ),
        OpDef(
            "memory.embed", "Embed text with an embedding model.", "granular",
            operands=(Operand("text", (T,)),), results=(Result("embedding", (E,)),),
            attrs=(_EMBED, _DTYPE, _KERNEL),
            example='%e = "memory.embed"(%q) {embed_model = "all-minilm-l6-v2"} : (!agent.text) -> !agent.embedding',
        ),
        OpDef(
            "memory.search", "Nearest-neighbour search of a memory store.", "granular",
            operands=(Operand("embedding", (E,)),), results=(Result("docs", (D,)),),
            attrs=(_STORE, _TOPK),
            example='%d = "memory.search"(%e) {store = "handbook", top_k = 4 : i64} : (!agent.embedding) -> !agent.docs',
        ),
        OpDef(
            "memory.store", "Embed and add text to a memory store.", "high",
            operands=(Operand("values", CONTEXT, variadic=True, min=1),),
            attrs=(_STORE, _EMBED),
            example='"memory.store"(%r) {store = "notes", embed_model = "all-minilm-l6-v2"} : (!agent.text) -> ()',
        ),
        # ---------------------------------------------------------------- general compute
        OpDef(
            "data.transform", "General-purpose processing: parsing, routing, formatting, privacy filtering.", "high",
            operands=(Operand("inputs", ANY, variadic=True, min=1),), results=(Result("output", ANY),),
            attrs=(Attr("fn", "string", required=True, doc="the transform, e.g. \"pii_redact\", \"concat\""),),
            example='%c = "data.transform"(%q, %s) {fn = "concat"} : (!agent.text, !agent.json) -> !agent.text',
        ),
        # ---------------------------------------------------------------- control
        OpDef(
            "control.branch", "Run one of two regions, chosen at run time by a predicate.", "structural",
            operands=(Operand("condition", ANY, doc="the value the predicate inspects"),),
            results=(Result("results", ANY, variadic=True, doc="what the taken region yields"),),
            attrs=(
                Attr("predicate", "string", required=True, doc="a registered predicate, e.g. \"needs_search\""),
                Attr("p_then", "float", min=0, max=1, doc="expected probability of the then region (default 0.5)"),
            ),
            regions=(Region("then", "control.yield"), Region("else", "control.yield")),
            example='%o = "control.branch"(%r) ({\n  "control.yield"(%r) : (!agent.text) -> ()\n}, {\n  '
            '"control.yield"(%q) : (!agent.text) -> ()\n}) {predicate = "is_safe", p_then = 0.9 : f64} : '
            "(!agent.text) -> !agent.text",
        ),
        OpDef(
            "control.loop", "Repeat a region with carried values: the only way to write a cycle.", "structural",
            operands=(Operand("init", ANY, variadic=True, min=1, doc="initial carried values"),),
            results=(Result("results", ANY, variadic=True, doc="carried values after the last trip"),),
            attrs=(
                Attr("max_trips", "int", required=True, min=1, doc="hard bound on trips"),
                Attr("expected_trips", "float", required=True, min=0, doc="mean trips, for planning"),
                Attr("until", "string", doc="a registered predicate on the yielded values that ends the loop"),
            ),
            regions=(Region("body", "control.yield", "block arguments are the carried values"),),
            description="Runs the body at most max_trips times; each trip's control.yield gives the next carried "
            "values; the loop ends early when `until` holds. Results have the carried values' types.",
            example='%ctx = "control.loop"(%q) ({\n^bb0(%c: !agent.text):\n  %r = "llm.call"(%c) {model = "llama-3-8b"} : '
            '(!agent.text) -> !agent.text\n  "control.yield"(%r) : (!agent.text) -> ()\n}) {max_trips = 3 : i64, '
            'expected_trips = 1.5 : f64, until = "no_tool_call"} : (!agent.text) -> !agent.text',
        ),
        OpDef(
            "control.yield", "Terminates a control.loop or control.branch region.", "structural",
            operands=(Operand("values", ANY, variadic=True),), terminator=True,
            example='"control.yield"(%r) : (!agent.text) -> ()',
        ),
        # ---------------------------------------------------------------- MoE and tensor parallelism
        OpDef(
            "gate.select", "MoE router: choose experts for each token.", "granular",
            operands=(Operand("hidden", (X,)),), results=(Result("routing", (X,)),),
            attrs=(_MODEL, Attr("num_experts", "int", required=True, min=1), Attr("top_k", "int", required=True, min=1), _KERNEL),
            example='%g = "gate.select"(%h) {model = "mixtral-8x7b", num_experts = 8 : i64, top_k = 2 : i64} : '
            "(!agent.tensor) -> !agent.tensor",
        ),
        OpDef(
            "expert.tp.prefill", "Expert FFNs over a prompt, sharded tensor-parallel.", "granular",
            operands=(Operand("hidden", (X,)), Operand("routing", (X,))), results=(Result("out", (X,)),),
            attrs=(_MODEL, _TP, _DTYPE, _IN, _KERNEL),
            example='%o = "expert.tp.prefill"(%h, %g) {model = "mixtral-8x7b", tp = 2 : i64} : '
            "(!agent.tensor, !agent.tensor) -> !agent.tensor",
        ),
        OpDef(
            "expert.tp.decode", "Expert FFNs for one decode step, sharded tensor-parallel.", "granular",
            operands=(Operand("hidden", (X,)), Operand("routing", (X,))), results=(Result("out", (X,)),),
            attrs=(_MODEL, _TP, _DTYPE, _KERNEL),
            example='%o = "expert.tp.decode"(%h, %g) {model = "mixtral-8x7b", tp = 2 : i64} : '
            "(!agent.tensor, !agent.tensor) -> !agent.tensor",
        ),
        OpDef(
            "merge.expert_outputs", "Weighted sum of the chosen experts' outputs.", "granular",
            operands=(Operand("outputs", (X,), variadic=True, min=1),), results=(Result("merged", (X,)),),
            attrs=(Attr("top_k", "int", min=1),),
            example='%m = "merge.expert_outputs"(%o1, %o2) {top_k = 2 : i64} : (!agent.tensor, !agent.tensor) -> !agent.tensor',
        ),
        OpDef(
            "collective.allreduce", "Sum a tensor across the ranks of a tensor-parallel group.", "granular",
            operands=(Operand("value", (X,)),), results=(Result("reduced", (X,)),),
            attrs=(_TP,),
            example='%s = "collective.allreduce"(%o) {tp = 2 : i64} : (!agent.tensor) -> !agent.tensor',
        ),
        # ---------------------------------------------------------------- partition boundaries
        OpDef(
            "xfer.send", "Send a value to another partition.", "granular",
            operands=(Operand("value", ANY),), attrs=(_CHANNEL, _PAYLOAD, _PEER),
            example='"xfer.send"(%kv) {channel = "c0", payload = "kv", peer = "gaudi"} : (!agent.kv) -> ()',
        ),
        OpDef(
            "xfer.recv", "Receive a value sent by another partition.", "granular",
            results=(Result("value", ANY),), attrs=(_CHANNEL, _PAYLOAD, _PEER),
            example='%kv = "xfer.recv"() {channel = "c0", payload = "kv", peer = "cuda"} : () -> !agent.kv',
        ),
    )


OPS: dict[str, OpDef] = {op.name: op for op in _ops()}
DIALECTS: tuple[str, ...] = tuple(sorted({op.dialect for op in OPS.values()}))


def op_def(name: str) -> OpDef | None:
    return OPS.get(name)


def is_agent_op(name: str) -> bool:
    """True for any op in an agent dialect namespace, known to the table or not."""
    return name.split(".", 1)[0] in DIALECTS
