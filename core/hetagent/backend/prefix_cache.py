"""The prefix cache a prefill worker keeps (`spec/runtime.md`, prefix cache): the KV of recent prompts, in
blocks of BLOCK_TOKENS tokens, least recently used evicted first, within a memory budget.

A block is keyed by a chained hash: the hash of the previous block's key and this block's token ids, seeded with
the model and dtype, so a key names a whole prefix (every token before the block's end), never a block's tokens
alone. `lookup` walks a prompt's keys from the start and stops at the first one missing: the longest cached
prefix. Only full blocks are kept; a prompt's last partial block is prefilled every time.

Eviction drops the least recently used block. A hit or an insert touches its chain's blocks deepest first, so
a prefix's first blocks are the most recent of its chain: eviction trims prefixes from their ends and never
leaves a block whose parent is gone (such a block could never be found again).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

BLOCK_TOKENS = 16


def block_keys(seed: str, ids) -> list[bytes]:
    """The chained key of each full block of `ids`."""
    keys, previous = [], hashlib.blake2b(seed.encode(), digest_size=16).digest()
    for start in range(0, len(ids) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        block = np.asarray(ids[start:start + BLOCK_TOKENS], dtype=np.int64).tobytes()
        previous = hashlib.blake2b(previous + block, digest_size=16).digest()
        keys.append(previous)
    return keys


class PrefixCache:
    """Blocks of KV ([layers, 2, kv_heads, BLOCK_TOKENS, head_dim] each) by chained key, within `budget_bytes`."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.blocks: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.evicted = 0  # blocks dropped to stay within the budget

    def lookup(self, seed: str, ids, limit: int) -> tuple[int, list[np.ndarray]]:
        """The longest cached prefix of `ids` of at most `limit` tokens: (its length, its blocks in order)."""
        keys = block_keys(seed, ids[:limit])
        found = []
        for key in keys:
            block = self.blocks.get(key)
            if block is None:
                break
            found.append(block)
        self._touch(keys[:len(found)])
        return len(found) * BLOCK_TOKENS, found

    def insert(self, seed: str, ids, kv: np.ndarray) -> None:
        """Keep the full blocks of a prompt whose cache is kv[layers, 2, kv_heads, >= len(ids), head_dim]."""
        keys = block_keys(seed, ids)
        for index, key in enumerate(keys):
            if key not in self.blocks:
                start = index * BLOCK_TOKENS
                block = np.array(kv[:, :, :, start:start + BLOCK_TOKENS, :])  # a copy: the kernel's buffer moves on
                if block.nbytes > self.budget_bytes:
                    return
                self.blocks[key] = block
                self.bytes += block.nbytes
        self._touch(keys)
        while self.bytes > self.budget_bytes:
            _, block = self.blocks.popitem(last=False)
            self.bytes -= block.nbytes
            self.evicted += 1

    def _touch(self, keys: list[bytes]) -> None:
        for key in reversed(keys):  # deepest first: a chain's root ends up the most recent of its blocks
            if key in self.blocks:
                self.blocks.move_to_end(key)
