"""The prefix cache: blocks, LRU eviction within a budget, the extend kernel's exactness, cache-aware routing,
and the engine's runs with and without it (same tokens; hit rate and tokens saved in the report)."""

import numpy as np
import pytest

from hetagent.backend.prefix_cache import BLOCK_TOKENS, PrefixCache, block_keys
from hetagent.runtime import prefix_routing


def _kv(ids, layers=2, heads=2, dim=4):
    """A fake per-sequence cache whose slot t holds the token id at t: blocks show where they came from."""
    kv = np.zeros((layers, 2, heads, len(ids) + 8, dim), dtype=np.float32)
    kv[:, :, :, : len(ids), :] = np.asarray(ids, dtype=np.float32)[None, None, None, :, None]
    return kv


def test_keys_name_whole_prefixes():
    a = list(range(40))
    b = list(range(16)) + [99] * 24
    assert len(block_keys("m", a)) == 2  # full blocks only
    assert block_keys("m", a)[0] == block_keys("m", b)[0] and block_keys("m", a)[1] != block_keys("m", b)[1]
    assert block_keys("m", a)[0] != block_keys("other-model", a)[0]
    shifted = [7] * 16 + list(range(16))  # the same block after another prefix is another key
    assert block_keys("m", shifted)[1] != block_keys("m", a)[0]


def test_longest_prefix_and_lru_eviction_within_the_budget():
    block_bytes = _kv(range(16))[:, :, :, :16].nbytes
    cache = PrefixCache(budget_bytes=5 * block_bytes)
    first = list(range(3, 3 + 50))  # 3 full blocks
    cache.insert("m", first, _kv(first))
    assert len(cache.blocks) == 3 and cache.bytes == 3 * block_bytes
    turn = first + [200] * 30  # a longer prompt with the same start: 3 blocks cached of 5
    cached, blocks = cache.lookup("m", turn, len(turn) - 1)
    assert cached == 3 * BLOCK_TOKENS
    assert np.array_equal(np.concatenate(blocks, axis=3)[0, 0, 0, :, 0], np.asarray(turn[:cached], dtype=np.float32))
    assert cache.lookup("m", turn, 20)[0] == BLOCK_TOKENS  # never past the limit (the last token always runs)
    cache.insert("m", turn, _kv(turn))
    assert len(cache.blocks) == 5 and cache.evicted == 0
    other = [100 + i for i in range(40)]  # 2 new blocks: the least recently used go, deepest first
    cache.insert("m", other, _kv(other))
    assert cache.bytes <= cache.budget_bytes and cache.evicted == 2
    assert cache.lookup("m", other, len(other))[0] == 2 * BLOCK_TOKENS
    assert cache.lookup("m", turn, len(turn) - 1)[0] == 3 * BLOCK_TOKENS  # trimmed at its end, its start kept
    assert PrefixCache(budget_bytes=block_bytes - 1).insert("m", first, _kv(first)) is None  # nothing fits: none kept


def test_routing_weighs_the_cached_prefix_against_the_queue():
    sent = prefix_routing.SentPrompts(per_worker=2)
    history = "system\x1eturn one. turn two. "
    sent.record("a", history)
    assert sent.matched("a", history + "turn three.") == len(history) and sent.matched("b", history) == 0
    prompt = len(history) + 11
    # the holder wins at an equal queue; a call more ahead of it outweighs a saving of less than a whole call
    assert prefix_routing.choose([0, 0], [0, len(history)], prompt) == 1
    assert prefix_routing.choose([1, 1], [0, len(history)], prompt) == 1
    assert prefix_routing.choose([0, 1], [0, len(history)], prompt) == 0
    assert prefix_routing.choose([1, 1], [len(history) // 2, len(history)], prompt) == 1  # the longer prefix
    assert prefix_routing.choose([1, 0], [0, 0], prompt) == 1  # no prefix anywhere: the least loaded
    sent.record("a", "x")
    sent.record("a", "y")  # only the most recent prompts per worker are remembered
    assert sent.matched("a", history) == 0


def test_extend_over_a_cached_prefix_equals_the_prefill():
    torch = pytest.importorskip("torch")
    from hetagent.models import reference
    from hetagent.models.catalog import card

    model = card("tiny-llama")
    weights = reference.random_weights(model, dtype="fp32")
    ids = torch.tensor([[1] + [3 + (7 * i) % 250 for i in range(69)]])
    logits, kv = reference.prefill(model, weights, ids, torch.tensor([70]), 128)
    _, prefix_kv = reference.prefill(model, weights, ids[:, :48], torch.tensor([48]), 128)
    prefix_kv[:, :, :, :, 48:] = 0  # the cache holds the prefix's blocks only
    chunk = torch.zeros((1, 16), dtype=torch.int64)
    chunk[0, :22 - 16] = ids[0, 64:]  # two chunks: 16 tokens, then 6
    step, kv2 = reference.extend(model, weights, ids[:, 48:64], torch.tensor([16]), torch.tensor([48]), prefix_kv)
    step, kv2 = reference.extend(model, weights, chunk, torch.tensor([6]), torch.tensor([64]), kv2)
    assert torch.allclose(step, logits, atol=1e-4) and step.argmax() == logits.argmax()
    assert torch.allclose(kv2[:, :, :, :, :70], kv[:, :, :, :, :70], atol=1e-5)
    assert not kv2[:, :, :, :, 70:].any()  # padding in the chunk writes nothing


TURNS = """"agent.graph"() ({
  %q = "input.query"() : () -> !agent.text
  %a = "llm.call"(%q) {model = "tiny-llama", input_tokens = 256 : i64, output_tokens = 8 : i64, name = "chat"}
      : (!agent.text) -> !agent.text
  "agent.return"(%a) : (!agent.text) -> ()
}) {sym_name = "turns", sla_ms = 600000.0 : f64} : () -> ()
"""


def _conversations(engine, turns=3, chats=2):
    """Chats whose every turn resends the conversation so far (the answers included) with a new message."""
    from hetagent.runtime.engine import Request

    history, records = ["Be brief. Answer in English."] * chats, []
    for turn in range(turns):
        requests = []
        for c in range(chats):
            history[c] += f" U{c}: question {turn} about part {10 * c + turn}?"
            requests.append(Request(len(records) + c, {"query": history[c]}, 0.0, seed=c))
        done = engine.run(requests)
        for c, record in enumerate(done):
            history[c] += " A: " + "".join(record.tokens["chat.decode"])
        records += done
    return records


def test_tokens_equal_a_run_without_the_cache_under_a_small_budget(registry, cache_dir, tmp_path):
    pytest.importorskip("torch")
    from hetagent.compiler.cache import CompileCache
    from hetagent.models.catalog import card
    from hetagent.runtime.engine import EngineOptions, LocalEngine
    from hetagent.runtime.report import prefix_cache
    from hetagent.runtime.run import new_run_id, prepare

    agent = tmp_path / "turns.mlir"
    agent.write_text(TURNS)
    prepared = prepare(agent, registry=registry, cache=CompileCache(cache_dir))
    (prefill,) = [n for n in prepared.program.nodes() if n.op == "llm.prefill"]
    assert prefill.extend.function == {**prefill.extend.function, "function": "extend", "batch": 1, "prompt": 64,
                                       "capacity": prefill.kernel.function["capacity"]}
    model = card("tiny-llama")
    block_bytes = model.num_layers * 2 * model.num_kv_heads * BLOCK_TOKENS * model.head_size * 4
    runs = {}
    for budget_blocks in (0, 4):
        options = EngineOptions(run_id=new_run_id(), cache_dir=str(cache_dir), admission="limit",
                                prefix_cache_mb=budget_blocks * block_bytes / 2**20)
        with LocalEngine(prepared.program, prepared.workers, options,
                         kernels_of=prepared.kernels_of) as engine:
            if budget_blocks:
                engine.scale(prepared.workers[0].name, 2)  # two replicas: the router keeps each chat on one
                while not all(w.ready for w in engine.workers):
                    engine.poll(0.2)
            records = _conversations(engine)
            runs[budget_blocks] = (records, list(engine.ops))
    (plain, plain_ops), (cached, cached_ops) = runs[0], runs[4]
    assert [r.status for r in cached] == ["ok"] * 6
    assert [r.tokens for r in cached] == [r.tokens for r in plain]  # exact: the same tokens as without a cache
    prefills = [o for o in cached_ops if o.op == "llm.prefill"]
    # later turns' prompts have more blocks than the budget holds: what is reused is bounded by it, and every
    # later turn still finds its chat's first blocks (eviction trims prefixes from their ends)
    assert all(o.prompt_tokens > 4 * BLOCK_TOKENS for o in prefills[2:])
    assert all(0 < o.cached_tokens <= 4 * BLOCK_TOKENS for o in prefills[2:])
    workers = [{o.worker for o in prefills if o.request % 2 == chat} for chat in (0, 1)]
    assert len(workers[0]) == len(workers[1]) == 1 and workers[0] != workers[1]  # each chat stays on its replica
    assert sum(r.cached_tokens for r in cached) == prefix_cache(cached_ops)["saved_tokens"] > 0
    assert prefix_cache(plain_ops)["saved_tokens"] == 0 and prefix_cache(plain_ops)["prefills"] == 6
