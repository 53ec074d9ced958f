"""Text in and out of the models: a byte-level tokenizer and seeded sampling.

The tokenizer is the stand-in for random-weight models (their vocabulary means nothing): ids 0, 1, 2 are pad,
begin and end of sequence, and id 3 + b is byte b, so every text round-trips and no vocabulary file is needed.
Sampling only ever picks ids the tokenizer can decode (bytes and end of sequence); it is greedy at temperature
0 and otherwise draws from a generator seeded by (request seed, op, step), so the same seed gives the same
tokens whichever worker, batch slot or retry produces them.
"""

from __future__ import annotations

import zlib

import numpy as np

PAD, BOS, EOS = 0, 1, 2
BYTE_OFFSET = 3
VOCAB_USED = BYTE_OFFSET + 256


def encode(text: str) -> list[int]:
    return [BOS] + [BYTE_OFFSET + b for b in text.encode()]


def decode(tokens) -> str:
    return bytes(t - BYTE_OFFSET for t in tokens if BYTE_OFFSET <= t < VOCAB_USED).decode(errors="replace")


def stream_seed(seed: int, label: str) -> int:
    """A per-(request, op) seed that does not depend on where the op runs."""
    return zlib.crc32(label.encode(), seed & 0xFFFFFFFF)


def sample(logits: np.ndarray, temperature: float, seed: int, step: int) -> int:
    """One token from one row of logits."""
    allowed = np.asarray(logits[:VOCAB_USED], dtype=np.float64).copy()
    allowed[[PAD, BOS]] = -np.inf
    if temperature <= 0:
        return int(np.argmax(allowed))
    scaled = (allowed - allowed.max()) / temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    return int(np.random.default_rng((seed, step)).choice(VOCAB_USED, p=probs))
