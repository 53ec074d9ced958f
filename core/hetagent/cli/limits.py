"""Numeric command-line options: finite and in range, or argparse's usual error (exit 2, naming the option).

The limits are the ones `spec/` states for each command; they bound the work a single command may be asked to do.
"""

from __future__ import annotations

import argparse
import math


def number(low: float | None = None, high: float | None = None, *, integer: bool = False, low_open: bool = False):
    """An argparse `type`: a finite number in [low, high] ((low, high] with `low_open`); `integer` for counts."""

    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integer else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if low_open else '>='} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be <= {high:g}")
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse


MAX_SIM_SECONDS = 86_400.0  # one day of simulated arrivals
MAX_REQUESTS = 1_000_000
COUNT = number(1, 1 << 31, integer=True)
TOKENS = number(0, 10_000_000, integer=True)
SECONDS = number(0, MAX_SIM_SECONDS, low_open=True)
RATE = number(0, 1_000_000, low_open=True)
REQUESTS = number(1, MAX_REQUESTS, integer=True)
MILLISECONDS = number(0, 1e9, low_open=True)
