"""The requests of a run: how many, when they arrive, and what they carry.

`--requests N` sends N requests, all at once (a closed batch) or, with `--rate R`, as a Poisson process of R
requests/s. `--trace FILE --rate R` replays the arrival pattern of an Azure LLM inference trace (CSV with a
`TIMESTAMP` column, as in `../shared/data/traces/`), its inter-arrival times rescaled to a mean rate of R/s.
Each request carries a question (`--prompt`, else one of a few fixed questions, in turn) and a deterministic
synthetic audio clip (a voiced chirp with noise, seeded by the request) for agents that start from audio.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np

from hetagent.backend.text import Sampling
from hetagent.errors import HetagentError
from hetagent.runtime.engine import Request

QUESTIONS = (
    "What is the boiling point of water at the top of Mount Everest?",
    "How do heat pumps move heat from a cold place to a warm one?",
    "Why do GPUs decode tokens faster than CPUs?",
    "What does a vector database index?",
)


def synthetic_audio(seed: int, seconds: float, rate: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 80 * np.sin(2 * np.pi * 0.5 * t)
    voiced = np.sin(2 * np.pi * np.cumsum(pitch) / rate) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.6 * voiced + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def trace_arrivals(path: Path, count: int | None, rate: float) -> list[float]:
    try:
        with path.open() as f:
            stamps = [datetime.fromisoformat(row["TIMESTAMP"][:26]) for row in csv.DictReader(f)]
    except (OSError, KeyError, ValueError) as exc:
        raise HetagentError(f"{path}: not a request trace with a TIMESTAMP column ({exc})") from None
    stamps = stamps[:count] if count else stamps
    if len(stamps) < 2:
        raise HetagentError(f"{path}: a trace needs at least two requests")
    offsets = np.array([(s - stamps[0]).total_seconds() for s in stamps])
    mean_gap = offsets[-1] / (len(offsets) - 1)
    return list(offsets * ((1 / rate) / mean_gap if mean_gap > 0 else 0.0))


def requests(count: int, *, rate: float | None, trace: Path | None, prompt: str | None, seed: int,
             audio_seconds: float, sample_rate: int, sampling: Sampling | None = None) -> list[Request]:
    if rate is not None and rate <= 0:
        raise HetagentError(f"--rate {rate}: must be > 0 requests per second")
    if count < 1:
        raise HetagentError(f"--requests {count}: must be >= 1")
    if trace is not None:
        if rate is None:
            raise HetagentError("--trace needs --rate R (the mean request rate to replay it at)")
        arrivals = trace_arrivals(trace, count, rate)
    elif rate is not None:
        arrivals = list(np.cumsum(np.random.default_rng(seed).exponential(1 / rate, count)) - 1 / rate)
    else:
        arrivals = [0.0] * count
    return [
        Request(i, {"query": prompt or QUESTIONS[i % len(QUESTIONS)],
                    "audio": synthetic_audio(seed + i, audio_seconds, sample_rate)}, max(0.0, a), seed + i,
                sampling=sampling)
        for i, a in enumerate(arrivals)
    ]
