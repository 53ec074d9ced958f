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


class IncrementalDetokenizer:
    """Text deltas of a token stream: `push` the ids as they come, get the text they add.

    Each push decodes every id so far and returns what extends the text already returned, holding back a trailing
    U+FFFD: an incomplete multi-byte character (or, for a merging tokenizer, a piece whose text depends on the
    next token) decodes to it until the rest arrives. So the deltas never need correcting, and `finish` with the
    decoded text of all the ids returns the remainder: the deltas joined are exactly that text. Decoding from the
    start each time is quadratic in the answer's length, which its token budget bounds (a few hundred)."""

    def __init__(self, detokenize=decode):
        self._detokenize = detokenize
        self._tokens: list[int] = []
        self.text = ""  # returned so far

    def push(self, tokens) -> str:
        self._tokens.extend(tokens)
        stable = self._detokenize(self._tokens).rstrip("\ufffd")
        if len(stable) <= len(self.text) or not stable.startswith(self.text):
            return ""
        delta, self.text = stable[len(self.text):], stable
        return delta

    def finish(self, final: str) -> str:
        """What of `final` (the decoded text of every id) has not been returned yet."""
        rest = final.removeprefix(self.text)  # the text returned is a prefix of it (the held-back rule)
        self.text = final
        return rest
