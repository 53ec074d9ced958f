"""Tier c — operator numerics against the float64 oracle on fresh random inputs: GEMM-class kernels, prefill,
a decode step and embedding (kernels built by the backend's pipeline, run by its kernel runner), vector search
and KV-cache export / import (run by the backend's executors, caches in `spec/kv-format.md`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hetagent.models.catalog import card
from hetagent.backend import kv_format, text
from hetagent.backend.executor import Call

from hetagent_conformance.kernels import CAPACITY, MODEL, PROMPT
from hetagent_conformance.oracle import Decoder, compare, tolerance
from hetagent_conformance.plugin import dtypes

ELEMENT = {"fp32": "f32", "fp16": "f16"}
# op -> (input shapes, output shape, linalg op, the oracle); inner dimension 96 throughout
GEMM = {
    "matmul": (((32, 96), (96, 48)), (32, 48), "linalg.matmul", lambda a, b: a @ b),
    "batch_matmul": (((4, 16, 96), (4, 96, 24)), (4, 16, 24), "linalg.batch_matmul", lambda a, b: a @ b),
    "matvec": (((128, 96), (96,)), (128,), "linalg.matvec", lambda a, x: a @ x),
}


def _tensor(shape, dtype: str) -> str:
    return f"tensor<{'x'.join(map(str, shape))}x{ELEMENT[dtype]}>"


def gemm_source(op: str, dtype: str) -> tuple[str, str]:
    (a, b), out, linalg, _ = GEMM[op]
    symbol = f"conformance_{op}_{dtype}"
    ta, tb, to, el = _tensor(a, dtype), _tensor(b, dtype), _tensor(out, dtype), ELEMENT[dtype]
    return symbol, f"""func.func @{symbol}(%a: {ta}, %b: {tb}) -> {to} {{
  %zero = arith.constant 0.0 : {el}
  %empty = tensor.empty() : {to}
  %init = linalg.fill ins(%zero : {el}) outs(%empty : {to}) -> {to}
  %r = {linalg} ins(%a, %b : {ta}, {tb}) outs(%init : {to}) -> {to}
  return %r : {to}
}}
"""


def check(record_property, op: str, dtype: str, pairs: dict, **tighten) -> None:
    """Compare each named (got, expected) pair under the op's tolerance; report the errors, fail on any excess."""
    results = [compare(name, got, expected, tolerance(op, dtype, **tighten)) for name, (got, expected) in pairs.items()]
    record_property("max_error", max(r.max_error for r in results))
    record_property("errors", {r.what: r.max_error for r in results})
    tol = results[0].tolerance
    record_property("tolerance", {"atol": tol.atol, "rtol": tol.rtol})
    bad = [r.message() for r in results if not r.ok]
    assert not bad, "; ".join(bad)


@dtypes("fp32", "fp16")
@pytest.mark.parametrize("op", list(GEMM))
def test_gemm(backend, op, dtype, rng, record_property):
    device = backend.need_device()
    backend.need_runner()
    symbol, source = gemm_source(op, dtype)
    run = backend.runner(backend.build(source, symbol, device), symbol, device)
    shapes, _, _, oracle = GEMM[op]
    # the second operand scaled by 1/sqrt(inner): outputs of unit scale, as in a network layer
    a = rng.standard_normal(shapes[0]).astype(kv_format.NUMPY_DTYPES[dtype])
    b = (rng.standard_normal(shapes[1]) / math.sqrt(shapes[1][-2 if len(shapes[1]) > 1 else 0])).astype(kv_format.NUMPY_DTYPES[dtype])
    (got,) = run(a, b)
    check(record_property, "gemm", dtype, {op: (got, oracle(a.astype(np.float64), b.astype(np.float64)))})


def _oracle(kernel_ref, weights) -> Decoder:
    return Decoder(MODEL, dict(zip(kernel_ref.weights, weights)))


def _prompt(rng) -> tuple[np.ndarray, np.ndarray]:
    tokens = rng.integers(0, card(MODEL).vocab_size, (1, PROMPT), dtype=np.int64)
    return tokens, np.array([rng.integers(PROMPT // 2, PROMPT + 1)], dtype=np.int64)


@dtypes("fp32", "fp16")
def test_prefill(backend, kernel, dtype, rng, record_property):
    backend.need_runner()
    ref, weights = kernel("prefill", dtype)
    tokens, lengths = _prompt(rng)
    logits, kv = backend.runner(ref.artifact, ref.symbol, backend.device)(tokens, lengths, *weights)
    expected_logits, expected_kv = _oracle(ref, weights).prefill(tokens, lengths, CAPACITY)
    check(record_property, "prefill", dtype, {"logits": (logits, expected_logits), "kv": (kv, expected_kv)})


@dtypes("fp32", "fp16")
def test_decode_step(backend, kernel, dtype, rng, record_property):
    backend.need_runner()
    ref, weights = kernel("decode", dtype)
    model = card(MODEL)
    kv = rng.standard_normal((model.num_layers, 2, 1, model.num_kv_heads, CAPACITY, model.head_size))
    kv = kv.astype(kv_format.NUMPY_DTYPES[dtype])
    token = rng.integers(0, model.vocab_size, (1,), dtype=np.int64)
    position = rng.integers(1, CAPACITY, (1,), dtype=np.int64)
    logits, new_kv = backend.runner(ref.artifact, ref.symbol, backend.device)(token, position, kv, *weights)
    expected_logits, expected_kv = _oracle(ref, weights).decode(token, position, kv)
    check(record_property, "decode", dtype, {"logits": (logits, expected_logits), "kv": (new_kv, expected_kv)})


@dtypes("fp32", "fp16")
def test_embedding(backend, kernel, dtype, rng, record_property):
    backend.need_runner()
    ref, weights = kernel("embed", dtype)
    tokens, lengths = _prompt(rng)
    (embedding,) = backend.runner(ref.artifact, ref.symbol, backend.device)(tokens, lengths, *weights)
    (expected,) = _oracle(ref, weights).embed(tokens, lengths)
    check(record_property, "embed", dtype, {"embedding": (embedding, expected)})


def _call(backend, op: str, inputs: tuple, attrs: dict, kernel=None) -> Call:
    task = backend.next_task()
    return Call(task=task, request=task, op=op, label=f"conformance.{op}", attrs=attrs, inputs=inputs, kernel=kernel,
                deadline=math.inf, seed=0)


def _ok(outcome):
    if isinstance(outcome, Exception):  # an executor reports a failed call as an exception: erroring is failing
        raise outcome
    return outcome.values


def test_vector_search(backend, rng, tmp_path, record_property):
    from hetagent.backend.stores import build_store

    device = backend.need_device()
    searcher = backend.executor_class("memory.search", device)
    docs = tmp_path / "docs"
    docs.mkdir()
    # one chunk per paragraph (each near the chunk size), 256 documents
    (docs / "store.txt").write_text("\n\n".join(f"document {i} " + "x" * 440 for i in range(256)))
    vectors = {}

    def embed(texts):
        v = rng.standard_normal((len(texts), 64))
        vectors["base"] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return vectors["base"]

    build_store(docs, tmp_path / "index", embed_model="conformance", embed=embed, write_index=searcher.write_index)
    executor = backend.executor("memory.search", device, stores={"store": str(tmp_path / "index")})
    queries = rng.standard_normal((8, 64))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    calls = [_call(backend, "memory.search", (q.astype(np.float32),), {"store": "store", "top_k": 5}) for q in queries]
    outcomes = executor.run(calls)
    scores64 = queries @ vectors["base"].T
    got_scores, expected_scores, mismatched = [], [], []
    for i, outcome in enumerate(outcomes):
        (found,) = _ok(outcome)
        expected = np.argsort(-scores64[i], kind="stable")[:5]
        ids = [int(d["text"].split()[1]) for d in found]
        if ids != [int(j) for j in expected]:
            mismatched.append(f"query {i}: {ids}, expected {expected.tolist()}")
        got_scores.append([d["score"] for d in found])
        expected_scores.append(scores64[i, expected])
    assert not mismatched, "nearest neighbours differ from the oracle: " + "; ".join(mismatched)
    check(record_property, "search", "fp32", {"scores": (np.array(got_scores), np.array(expected_scores))})


@dtypes("fp32", "fp16")
def test_kv_export(backend, kernel, dtype, record_property):
    """The backend's prefill writes its cache in the exchange format; its content is the oracle's."""
    ref, weights = kernel("prefill", dtype)
    executor = backend.executor("llm.prefill", backend.device, kernels=[ref])
    prompt = "Conformance: every backend against the reference."  # within the prompt capacity
    handle, start = _ok(executor.run([_call(backend, "llm.prefill", (prompt,), {}, ref)])[0])
    model = card(MODEL)
    try:
        header = handle.header
        assert (header.model, header.dtype, header.layers, header.kv_heads, header.head_dim) == (
            MODEL, dtype, model.num_layers, model.num_kv_heads, model.head_size), f"KV header {header}"
        kv = np.zeros((model.num_layers, 2, 1, model.num_kv_heads, CAPACITY, model.head_size), dtype=np.float64)
        kv_format.read_into(handle, kv)
    finally:
        kv_format.unlink(handle.segment)
    ids = text.encode(prompt)
    assert header.tokens == len(ids) == start["position"], f"{header.tokens} tokens in the cache, prompt has {len(ids)}"
    tokens = np.full((1, PROMPT), text.PAD, dtype=np.int64)
    tokens[0, : len(ids)] = ids
    logits, expected = _oracle(ref, weights).prefill(tokens, np.array([len(ids)]), CAPACITY)
    n = len(ids)
    check(record_property, "kv", dtype, {"kv": (kv[:, :, :, :, :n], expected[:, :, :, :, :n])})


@dtypes("fp32", "fp16")
def test_kv_import(backend, kernel, dtype, record_property):
    """The backend's decode continues a cache another writer put in the exchange format, as the oracle does."""
    ref, weights = kernel("decode", dtype)
    executor = backend.executor("llm.decode", backend.device, kernels=[ref])
    oracle = _oracle(ref, weights)
    prompt, count = oracle.unambiguous_prompt(CAPACITY, tolerance("decode", dtype), steps=4)
    tokens = np.full((1, PROMPT), text.PAD, dtype=np.int64)
    tokens[0, : len(prompt)] = prompt
    _, kv = oracle.prefill(tokens, np.array([len(prompt)]), CAPACITY)
    expected = oracle.generate(prompt, count, CAPACITY)
    task = backend.next_task()
    handle = kv_format.write(kv.astype(kv_format.NUMPY_DTYPES[dtype]), len(prompt), model=MODEL, dtype=dtype,
                             segment=kv_format.segment_name(backend.run_id, task))
    call = _call(backend, "llm.decode", (handle, {"token": expected[0], "position": len(prompt)}),
                 {"output_tokens": count}, ref)
    try:
        assert executor.free_slots(call) > 0, "the decode executor has no free slot"
        executor.join(call)
        finished = []
        for _ in range(4 * count):
            finished += [outcome for c, outcome in executor.step() if c.task == call.task]
            if finished:
                break
    finally:
        kv_format.unlink(handle.segment)
    assert finished, f"the decode did not finish within {4 * count} steps"
    (got,) = _ok(finished[0])
    assert got == text.decode(expected), f"decoded {got!r}, the oracle {text.decode(expected)!r}"
