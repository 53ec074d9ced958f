"""The oracle: the CPU reference in float64, and the per-op tolerance table results are held to.

A result passes when every element satisfies `|got - expected| <= atol + rtol * |expected|` (numpy's
`allclose`), with (atol, rtol) from `TOLERANCES[op][dtype]`. A test may tighten an entry for itself
(`tolerance(op, dtype, atol=...)` keeps the smaller of the two), never loosen it: the table is the contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


# fp16 keeps 11 significant bits (~5e-4 relative per rounding) and accumulates in fp16 here, so an output of unit
# scale is off by ~1e-2 at worst; fp32 bounds leave room for another summation order. Measured on the cpu
# reference (tiny-llama, unit-scale inputs): fp32 errors ~1e-6, fp16 ~5e-3 — the table is 3-20x above that.
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "gemm": {"fp32": Tolerance(1e-4, 1e-4), "fp16": Tolerance(2e-2, 1e-2)},
    "prefill": {"fp32": Tolerance(1e-4, 1e-4), "fp16": Tolerance(2e-2, 2e-2)},
    "decode": {"fp32": Tolerance(1e-4, 1e-4), "fp16": Tolerance(2e-2, 2e-2)},
    "embed": {"fp32": Tolerance(1e-5, 1e-4), "fp16": Tolerance(2e-3, 1e-2)},
    "search": {"fp32": Tolerance(1e-5, 1e-5)},
    "kv": {"fp32": Tolerance(1e-4, 1e-4), "fp16": Tolerance(2e-2, 2e-2)},
}


def tolerance(op: str, dtype: str, *, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The table's tolerance for (op, dtype), tightened by `atol` / `rtol` where they are smaller."""
    base = TOLERANCES[op][dtype]
    return Tolerance(min(base.atol, atol if atol is not None else base.atol),
                     min(base.rtol, rtol if rtol is not None else base.rtol))


@dataclass(frozen=True)
class Comparison:
    what: str
    max_error: float  # max |got - expected|
    worst: float  # max |got - expected| / (atol + rtol * |expected|): <= 1 passes
    tolerance: Tolerance

    @property
    def ok(self) -> bool:
        return self.worst <= 1.0

    def message(self) -> str:
        return (f"{self.what}: max |error| {self.max_error:.3g} exceeds the tolerance (atol {self.tolerance.atol:g}, "
                f"rtol {self.tolerance.rtol:g}) by {self.worst:.3g}x")


def compare(what: str, got, expected, tol: Tolerance) -> Comparison:
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: shape {list(got.shape)}, expected {list(expected.shape)}")
    error = np.abs(got - expected)
    if not np.all(np.isfinite(got)):
        return Comparison(what, float("inf"), float("inf"), tol)
    worst = float(np.max(error / (tol.atol + tol.rtol * np.abs(expected)))) if error.size else 0.0
    return Comparison(what, float(error.max()) if error.size else 0.0, worst, tol)


class Decoder:
    """The reference decoder (`hetagent.models.reference`) in float64 on given weights: the LLM oracle.

    Weights are the very values the backend got (already rounded to its dtype), upcast, so the comparison
    measures the backend's arithmetic and not the rounding of the weights. (The reference computes its
    softmax and rotary angles in float32: about 1e-7 relative, far inside every tolerance.)"""

    def __init__(self, model: str, weights: dict[str, np.ndarray]):
        import torch

        from hetagent.models import reference
        from hetagent.models.catalog import card

        self.torch, self.reference, self.card = torch, reference, card(model)
        self.weights = {name: torch.from_numpy(np.asarray(w, dtype=np.float64)) for name, w in weights.items()}

    def _run(self, function, *args):
        with self.torch.no_grad():
            result = function(self.card, self.weights, *args)
        return tuple(r.numpy() for r in (result if isinstance(result, tuple) else (result,)))

    def prefill(self, tokens, lengths, capacity: int):
        t = self.torch
        return self._run(self.reference.prefill, t.from_numpy(tokens), t.from_numpy(lengths), capacity)

    def decode(self, token, positions, kv):
        t = self.torch
        return self._run(self.reference.decode, t.from_numpy(token), t.from_numpy(positions),
                         t.from_numpy(np.asarray(kv, dtype=np.float64)))

    def embed(self, tokens, lengths):
        t = self.torch
        return self._run(self.reference.embed, t.from_numpy(tokens), t.from_numpy(lengths))

    def generate(self, prompt: list[int], count: int, capacity: int, *, margins: list | None = None) -> list[int]:
        """Greedy tokens, the prefill's first included, as the runtime samples them at temperature 0; `margins`
        gets, per token, (lead of its logit over the runner-up's, its logit's magnitude)."""
        from hetagent.backend import text

        tokens = np.zeros((1, len(prompt)), dtype=np.int64)
        tokens[0] = prompt
        logits, kv = self.prefill(tokens, np.array([len(prompt)]), capacity)
        out = []
        position = len(prompt)
        while True:
            out.append(text.sample(logits[0], 0.0, 0, len(out)))
            if margins is not None:
                ranked = np.sort(np.delete(logits[0][: text.VOCAB_USED], [text.PAD, text.BOS]))
                margins.append((ranked[-1] - ranked[-2], abs(ranked[-1])))
            if len(out) >= count or out[-1] == text.EOS or position >= capacity:
                return out
            logits, kv = self.decode(np.array([out[-1]]), np.array([position]), kv)
            position += 1

    def unambiguous_prompt(self, capacity: int, tol, *, steps: int) -> tuple[list[int], int]:
        """A prompt whose greedy continuation of `steps` tokens never hinges on a near-tie: at each step the
        winning logit leads by more than the tolerance allows an implementation to be off. Any conforming backend
        must then produce exactly these tokens."""
        from hetagent.backend import text

        for attempt in range(256):
            prompt = text.encode(f"Conformance prompt {attempt}: the reference decides every token.")
            margins: list = []
            tokens = self.generate(prompt, steps, capacity, margins=margins)
            if all(lead > 2 * (tol.atol + tol.rtol * top) for lead, top in margins):  # both sides may err
                return prompt, len(tokens)
        raise AssertionError("no prompt with an unambiguous greedy continuation found in 256 attempts")
