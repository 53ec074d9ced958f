"""Cache-aware routing of prefills (`spec/runtime.md`, prefix cache): which worker should prefill a prompt.

The router keeps, per worker, the prompts it recently sent there (`SentPrompts`) — its own record, not a report
from the worker: no new message on the transport, no tokenizer in the router. Its view can be wrong only one way
(a prefix the worker has since evicted), and that costs a cache miss, never a wrong token: the worker looks its
cache up by token ids and reuses only what it holds.

`choose` weighs, for each candidate, the work the cache saves against the work queued ahead:

    score(w) = queued(w) − matched(w) / prompt

where queued(w) is the calls the worker holds, matched(w) the characters of this prompt that the longest prompt
recently sent to w shares with it, and prompt this prompt's characters. A prefill's time is about proportional to
the tokens it computes, so matched/prompt is the share of one call the worker saves; a call queued ahead costs
about one call. The lowest score wins: among workers with equally long queues, the one holding the longest
prefix; a worker with one call more queued loses even a whole-prompt match (waiting for a prefill costs about
what the match saves), so a busy holder sheds load rather than building a queue behind its cache. Ties keep the
order of the candidates (the router's least-loaded order).
"""

from __future__ import annotations

import os
from collections import OrderedDict

from hetagent.backend.transforms import render

PROMPTS_PER_WORKER = 32  # about what a worker's cache holds of recent prompts: older ones are likely evicted


def choose(queued: list[int], matched: list[int], prompt: int) -> int:
    """The index of the candidate to send a prompt of `prompt` characters to."""
    scores = [q - m / max(1, prompt) for q, m in zip(queued, matched)]
    return min(range(len(scores)), key=scores.__getitem__)


class SentPrompts:
    """The prompts recently sent to each worker, most recent last."""

    def __init__(self, per_worker: int = PROMPTS_PER_WORKER):
        self.per_worker = per_worker
        self.sent: dict[str, OrderedDict[str, None]] = {}

    def matched(self, worker: str, prompt: str) -> int:
        """Characters of `prompt` that the longest matching prompt sent to `worker` shares with it."""
        return max((len(os.path.commonprefix((prompt, p))) for p in self.sent.get(worker, ())), default=0)

    def record(self, worker: str, prompt: str) -> None:
        prompts = self.sent.setdefault(worker, OrderedDict())
        prompts[prompt] = None
        prompts.move_to_end(prompt)
        while len(prompts) > self.per_worker:
            prompts.popitem(last=False)


def prompt_text(inputs: tuple, system: str | None) -> str:
    """A prefill's prompt as the router compares it: the system text and the rendered inputs, in order. The
    worker applies the chat template over the same values, so a shared text prefix is, but for the token that
    straddles its end, a shared token prefix: close enough to rank workers."""
    return "\x1e".join([system or ""] + [render(v) for v in inputs])
