"""Whether this machine is quiet: measurements taken while other processes compete for its cores are noisy.

The benchmarks' rule: quiet while the 1-minute load average stays at most half the usable cores, and, in a virtual
machine, while the hypervisor takes at most 2 % of the CPU time (steal: its other guests run on our vCPUs; a
decode step measured 0.57-1.0 ms on the same kernel within an hour at 9 % steal, which the load average never shows).
"""

from __future__ import annotations

import os

QUIET_LOAD_PER_CORE = 0.5
QUIET_STEAL = 0.02
PROC_STAT = "/proc/stat"


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def cores() -> int:
    return len(usable_cores())


def load_average() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def cpu_ticks(path: str = PROC_STAT) -> tuple[int, int] | None:
    """(stolen, all) CPU time in ticks since boot, every CPU together, from the `cpu` line of /proc/stat (steal is
    its 8th field; guest time is already counted in user time); None where there is no such file."""
    try:
        with open(path) as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields)) if len(fields) == 8 else None


_AT_IMPORT = cpu_ticks()


def steal_since(before: tuple[int, int] | None = _AT_IMPORT, now: tuple[int, int] | None = None) -> float | None:
    """The fraction of CPU time the hypervisor took between two `cpu_ticks` samples (by default: since this module
    was imported, and now); None where unknown."""
    now = now or cpu_ticks()
    if before is None or now is None or now[1] <= before[1]:
        return None
    return (now[0] - before[0]) / (now[1] - before[1])


def is_quiet(load: float, on_cores: int | None = None) -> bool:
    return load <= QUIET_LOAD_PER_CORE * (on_cores or cores())


def load_warning(start: float, end: float, what: str, steal: float | None = None) -> str | None:
    """A warning naming the load when the machine was not quiet from `start` to `end` (load averages; `steal`: the
    fraction of CPU time stolen meanwhile, by default since this module was imported), else None."""
    n = cores()
    steal = steal_since() if steal is None else steal
    causes = []
    if not is_quiet(max(start, end), n):
        causes.append(f"load average {start:.1f} -> {end:.1f} on {n} cores: other processes competed")
    if steal is not None and steal > QUIET_STEAL:
        causes.append(f"the hypervisor took {steal:.0%} of the CPU time (steal): other guests ran on these cores")
    return f"{'; '.join(causes)}; {what} are not representative" if causes else None
