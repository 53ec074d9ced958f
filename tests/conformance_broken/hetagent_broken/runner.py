"""Fault 1: the cpu kernel runner, but matrix-vector products come back 5 % too large."""

from hetagent_cpu.executors import kernel_runner as cpu_runner


def kernel_runner(artifact, symbol, device):
    run = cpu_runner(artifact, symbol, device)
    if "matvec" not in symbol:
        return run
    return lambda *arrays: tuple(1.05 * out for out in run(*arrays))
