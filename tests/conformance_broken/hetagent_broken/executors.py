"""Fault 3: an executor that crashes on every call."""

from hetagent.runtime.executor import OneShotExecutor


class CrashingSearch(OneShotExecutor):
    def run(self, calls):
        raise RuntimeError("simulated executor crash")
