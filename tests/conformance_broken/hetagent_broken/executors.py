"""Fault 3: an executor that crashes on every call (it writes its store's index as the cpu one does)."""

from hetagent_cpu.memory import SearchExecutor


class CrashingSearch(SearchExecutor):
    def run(self, calls):
        raise RuntimeError("simulated executor crash")
