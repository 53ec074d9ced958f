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
