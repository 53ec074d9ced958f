"""Which model function a granular op needs, at which static shapes — decided without torch.

An `llm.prefill`, `llm.decode` or `memory.embed` op whose model has a Llama-architecture card gets a compute
kernel: one of the reference decoder's functions (`hetagent.models.reference`), exported at static shapes
taken from the op's workload descriptor; a `memory.embed` of a BERT encoder gets the encoder's embed
(`hetagent.models.encoder`, its prompt capped at the model's position table):

    prompt capacity T  = the op's input tokens (a distribution: its max, else mean + 3·std), rounded up to 64
    KV capacity S      = T + output tokens, rounded up to 64 (prefill takes S from the decode that reads its KV)
    batch B            = placement batch, else the op's `batch`, else 1

Rounding to buckets of 64 lets ops with similar shapes share one kernel. A prefill also gets an `extend` kernel
(`extend_for`: batch 1, a chunk of EXTEND_CHUNK tokens, the prefill's KV capacity), referenced by its
`extend_kernel` attribute: what the worker's prefix cache runs to prefill only the part of a prompt past its
longest cached prefix (`spec/runtime.md`, prefix cache). Ops that get no kernel (a model with
no card, a non-Llama architecture, an unsupported dtype) are not an error: they run in an executor, and the
reason is reported in the compile manifest.
"""

from __future__ import annotations

import math

from iree.compiler import ir

from hetagent.backend.functions import ModelFunction
from hetagent.errors import HetagentError
from hetagent.models.catalog import card
from hetagent.models.weight_names import architecture_problem, reference_functions

BUCKET = 64
DEFAULT_INPUT_TOKENS = 512
DEFAULT_OUTPUT_TOKENS = 256
DEFAULT_EMBED_TOKENS = 512  # text embedded by memory.embed carries no token count of its own
REFERENCE_DTYPES = ("fp32", "bf16", "fp16")
FUNCTION_OF_OP = {"llm.prefill": "prefill", "llm.decode": "decode", "memory.embed": "embed"}
KERNEL_ATTRS = ("kernel", "extend_kernel")  # the op attributes that reference a compute kernel
EXTEND_CHUNK = 64  # tokens an extend call prefills: what a prompt past its cached prefix costs, rounded up to it




def _round_up(tokens: float) -> int:
    return max(BUCKET, math.ceil(tokens / BUCKET) * BUCKET)


def _tokens(op, name: str, default: int) -> float:
    """A token count attribute: an integer, or a distribution's max (else mean + 3·std)."""
    if name not in op.attributes:
        return default
    attr = op.attributes[name]
    if isinstance(attr, ir.IntegerAttr):
        return attr.value
    fields = {attr[i].name: attr[i].attr.value for i in range(len(attr)) if attr[i].name != "dist"}
    return fields.get("max", fields["mean"] + 3 * fields.get("std", 0.0))


def _int_field(attr: ir.DictAttr, key: str) -> int | None:
    for i in range(len(attr)):
        if attr[i].name == key:
            return attr[i].attr.value
    return None


def _batch(op) -> int:
    if "placement" in op.attributes:
        batch = _int_field(op.attributes["placement"], "batch")
        if batch:
            return batch
    return op.attributes["batch"].value if "batch" in op.attributes else 1


def _model_name(op) -> str:
    key = "embed_model" if op.name == "memory.embed" else "model"
    return op.attributes[key].value


def _decode_reading(prefill) -> object | None:
    """The llm.decode that reads this prefill's KV cache (through a kv.transfer), if any."""
    for use in prefill.results[0].uses:
        user = use.owner
        if user.name == "kv.transfer":
            for inner in user.results[0].uses:
                if inner.owner.name == "llm.decode":
                    return inner.owner
        elif user.name == "llm.decode":
            return user
    return None


def _kv_capacity(decode) -> int:
    """The KV capacity a decode op needs; its prefill uses the same, so the cache it hands over fits."""
    prompt = _round_up(_tokens(decode, "input_tokens", DEFAULT_INPUT_TOKENS))
    return _round_up(prompt + _tokens(decode, "output_tokens", DEFAULT_OUTPUT_TOKENS))


def function_for(op) -> tuple[ModelFunction | None, str]:
    """The model function `op` needs, or (None, why it gets none)."""
    function = FUNCTION_OF_OP.get(op.name)
    if function is None:
        return None, f"{op.name} has no model function (it runs in an executor)"
    try:
        model = card(_model_name(op))
    except HetagentError as exc:
        return None, str(exc)
    problem = architecture_problem(model)
    if problem:
        return None, problem
    if function not in reference_functions(model):
        return None, f"model {model.name!r} is an encoder: it has {', '.join(reference_functions(model))}, no {function}"
    dtype = op.attributes["dtype"].value if "dtype" in op.attributes else model.default_dtype
    if dtype not in REFERENCE_DTYPES:
        return None, f"dtype {dtype!r}: the reference decoder runs in {', '.join(REFERENCE_DTYPES)}"
    batch = _batch(op)
    if function == "embed":
        # an encoder with learned positions reads at most its position table's length
        prompt = min(_round_up(DEFAULT_EMBED_TOKENS), model.max_position)
        return ModelFunction(model.name, function, dtype, batch, prompt=prompt), ""
    prompt = _round_up(_tokens(op, "input_tokens", DEFAULT_INPUT_TOKENS))
    decode = op if function == "decode" else _decode_reading(op)
    capacity = _kv_capacity(decode) if decode is not None else prompt
    if prompt > capacity:
        return None, f"a prompt of {prompt} tokens does not fit the KV cache ({capacity}) of the decode reading it"
    if capacity > model.max_position:
        return None, (
            f"a KV cache of {capacity} tokens exceeds model {model.name!r}'s max_position {model.max_position}"
        )
    if function == "prefill":
        return ModelFunction(model.name, function, dtype, batch, prompt=prompt, capacity=capacity), ""
    return ModelFunction(model.name, function, dtype, batch, capacity=capacity), ""


def extend_for(prefill: ModelFunction) -> ModelFunction:
    """The extend function that serves a prefill kernel's prefix cache: one sequence, a chunk of
    EXTEND_CHUNK tokens (the prompt capacity when smaller), over the same KV capacity."""
    return ModelFunction(prefill.model, "extend", prefill.dtype, 1, prompt=min(EXTEND_CHUNK, prefill.prompt),
                         capacity=prefill.capacity)


def kernel_symbols(op) -> list[str]:
    """The compute kernels an op references (its `kernel`, and a prefill's `extend_kernel`)."""
    return [op.attributes[name].value for name in KERNEL_ATTRS if name in op.attributes]
