"""Whether this machine is quiet: measurements taken while other processes compete for its cores are noisy.

The benchmarks' rule: quiet while the 1-minute load average stays at most half the usable cores.
"""

from __future__ import annotations

import os

QUIET_LOAD_PER_CORE = 0.5


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def cores() -> int:
    return len(usable_cores())


def load_average() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def is_quiet(load: float, on_cores: int | None = None) -> bool:
    return load <= QUIET_LOAD_PER_CORE * (on_cores or cores())


def load_warning(start: float, end: float, what: str) -> str | None:
    """A warning naming the load when the machine was not quiet from `start` to `end`, else None."""
    n = cores()
    if is_quiet(max(start, end), n):
        return None
    return (f"load average {start:.1f} -> {end:.1f} on {n} cores: other processes competed, {what} are not "
            "representative")
