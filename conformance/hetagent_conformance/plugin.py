"""The pytest plugin (entry point `pytest11`): options, the per-backend fixtures, the manifest, the report.

Inert unless `--hetagent-backend` is given: pytest loads it in every session of every project.

    pytest --pyargs hetagent_conformance.suite --hetagent-backend acme [--hetagent-tier a,b]
           [--hetagent-dtype fp32] [--hetagent-report out.json]

Every suite test takes the `backend` fixture (a `Subject`), parametrised over the backends named; the test
id the manifest and the report use is `<tier>/<test name>[<params>]`, e.g. `c/test_gemm[matvec-fp16]`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

TIERS = {
    "a": "contract",
    "b": "lowering",
    "c": "numerics",
    "d": "end to end",
    "e": "distributed",
}
DTYPES = ("fp32", "fp16")
REPORT_FORMAT = 1


def dtypes(*names: str):
    """Expand a test over these dtypes (those the run selects with --hetagent-dtype): its `dtype` argument."""
    def mark(function):
        function.dtypes = names
        return function

    return mark


def pytest_addoption(parser):
    group = parser.getgroup("hetagent-conformance", "hetagent backend conformance (spec/conformance.md)")
    group.addoption("--hetagent-backend", default=None, metavar="LIST", help="backend id(s) to check, comma-separated")
    group.addoption("--hetagent-tier", default=",".join(TIERS), metavar="LIST", help="tiers to run (default: all)")
    group.addoption("--hetagent-dtype", default=",".join(DTYPES), metavar="LIST",
                    help="dtypes to expand numeric tests over (default: all)")
    group.addoption("--hetagent-report", default=None, metavar="FILE", help="write the JSON report here")


def _listed(config, option: str) -> list[str]:
    value = config.getoption(option)
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def tier_of(item) -> str:
    """The tier a suite test belongs to: its module is `test_<tier>_<name>.py`."""
    return Path(str(item.path)).stem.split("_")[1]


def short_id(item) -> str:
    """`<tier>/<test>[<params>]` without the backend: what manifests match and reports show."""
    callspec = getattr(item, "callspec", None)
    params = [str(v) for k, v in callspec.params.items() if k != "backend"] if callspec else []
    return f"{tier_of(item)}/{item.originalname}" + (f"[{'-'.join(params)}]" if params else "")


def _reason(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash else str(report.longrepr or "")


class Conformance:
    """Session state: the backends under test, the outcome of every test, the report."""

    def __init__(self, config):
        from hetagent.compiler.cache import CompileCache

        self.config = config
        self.names = _listed(config, "--hetagent-backend")
        self.tiers = _listed(config, "--hetagent-tier")
        self.dtypes = _listed(config, "--hetagent-dtype")
        self.cache = CompileCache()
        self.subjects: dict[str, object] = {}
        self.results: dict[str, dict] = {}  # nodeid -> entry
        self.matched: dict[str, set[str]] = {}  # backend -> manifest patterns that matched a test
        self.started = time.perf_counter()

    def subject(self, name: str):
        from hetagent_conformance.subject import Subject

        if name not in self.subjects:
            self.subjects[name] = Subject(name, self.cache)
        return self.subjects[name]

    # ------------------------------------------------------------------ hooks (this object is a registered plugin)

    def pytest_collection_finish(self, session):
        for item in session.items:
            if "backend" in getattr(item, "fixturenames", ()):
                self.results[item.nodeid] = {"id": short_id(item), "backend": item.callspec.params["backend"],
                                             "tier": tier_of(item), "outcome": "not run", "reason": "",
                                             "duration_s": 0.0}

    @pytest.hookimpl(trylast=True)  # after pytest's own reporting has settled xfail and skip
    def pytest_runtest_logreport(self, report):
        from hetagent_conformance.subject import UNSUPPORTED

        entry = self.results.get(report.nodeid)
        if entry is None:
            return
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
        entry.update(report.user_properties)
        if report.when == "call" and report.passed:
            if hasattr(report, "wasxfail"):
                entry.update(outcome="unexpected pass",
                             reason=f"passes although the manifest expects a failure ({report.wasxfail}): remove it")
            else:
                entry["outcome"] = "pass"
        elif report.skipped:
            if hasattr(report, "wasxfail"):
                entry.update(outcome="expected failure", reason=report.wasxfail)
            else:
                reason = _reason(report)
                entry.update(outcome="unsupported" if reason.startswith(UNSUPPORTED) else "skipped",
                             reason=reason.removeprefix(UNSUPPORTED))
        elif report.failed and entry["outcome"] != "fail":  # the first failure (call, else setup or teardown)
            entry.update(outcome="fail", reason=(_reason(report).strip() or "failed").splitlines()[0][:500])

    def pytest_sessionfinish(self, session):
        path = session.config.getoption("--hetagent-report")
        if path:
            Path(path).write_text(json.dumps(report(self), indent=2) + "\n")


_KEY = pytest.StashKey[Conformance]()


def pytest_configure(config):
    if config.getoption("--hetagent-backend"):
        state = config.stash[_KEY] = Conformance(config)
        config.pluginmanager.register(state, "hetagent-conformance-session")


def _state(config) -> Conformance | None:
    return config.stash.get(_KEY, None)


def pytest_generate_tests(metafunc):
    state = _state(metafunc.config)
    if state is None or "backend" not in metafunc.fixturenames:
        return
    metafunc.parametrize("backend", state.names, indirect=True, scope="session")
    if "dtype" in metafunc.fixturenames:
        wanted = getattr(metafunc.function, "dtypes", DTYPES)
        metafunc.parametrize("dtype", [d for d in wanted if d in state.dtypes])


@pytest.fixture(scope="session")
def backend(request):
    """The backend under test (`hetagent_conformance.subject.Subject`)."""
    state = _state(request.config)
    if state is None:
        pytest.skip("not a conformance run: give --hetagent-backend NAME")
    return state.subject(request.param)


def pytest_collection_modifyitems(config, items):
    state = _state(config)
    if state is None:
        return
    kept, dropped = [], []
    for item in items:
        if "backend" not in getattr(item, "fixturenames", ()):
            kept.append(item)  # not a suite test: a vendor's own tests in the same session
            continue
        (kept if tier_of(item) in state.tiers else dropped).append(item)
        name = item.callspec.params["backend"]
        try:
            manifest = state.subject(name).manifest
        except Exception:  # a backend that does not load: its tests error in the fixture, with the reason
            continue
        expected = manifest.expectation(short_id(item))
        if expected:
            kind, pattern, reason = expected
            state.matched.setdefault(name, set()).add(pattern)
            item.add_marker(pytest.mark.skip(reason=f"manifest: {reason}") if kind == "skip"
                            else pytest.mark.xfail(reason=f"manifest: {reason}", strict=False))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def report(state: Conformance) -> dict:
    """The JSON report: one section per backend (spec/conformance.md, "Reading the report")."""
    from hetagent.compiler.export import installed_version

    backends = []
    for name in state.names:
        tests = [e for e in state.results.values() if e["backend"] == name]
        entry = {"backend": name, "tests": tests}
        subject = state.subjects.get(name)
        counts: dict[str, int] = {}
        for t in tests:
            counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        entry["summary"] = counts
        if subject is not None:
            info = subject.backend.info
            entries = set(subject.manifest.xfail) | set(subject.manifest.skip)
            complete = set(state.tiers) == set(TIERS) and set(state.dtypes) == set(DTYPES)
            entry.update(
                version=info.version if info else None,
                plugin_api=info.plugin_api if info else None,
                device=_device(subject),
                manifest=subject.manifest.source,
                # entries no test matched (only knowable when every tier and dtype ran): remove them
                stale_manifest_entries=sorted(entries - state.matched.get(name, set())) if complete else [],
                ops=_op_counts(subject),
                compiles=subject.compiles,
            )
        backends.append(entry)
    return {
        "format": REPORT_FORMAT,
        "tiers": state.tiers,
        "dtypes": state.dtypes,
        "versions": {d: installed_version(d) for d in ("hetagent", "hetagent-conformance", "iree-base-compiler", "torch")},
        "wall_s": round(time.perf_counter() - state.started, 3),
        "backends": backends,
    }


def _device(subject) -> str | None:
    try:
        return subject.device
    except Exception:  # a detection hook that raises: tier a reports it
        return None


def _runnable_ops() -> list[str]:
    """The ops worker executors run: the granular ones but transfers (the engine moves data), and the high-level
    ops decompose leaves whole."""
    from hetagent.ir.optable import OPS

    granular = {name for name, op in OPS.items() if op.level == "granular"}
    return sorted(granular - {"kv.transfer", "xfer.send", "xfer.recv"} | {"audio.stt", "audio.tts", "data.transform"})


def _op_counts(subject) -> dict:
    """Runnable ops this backend's executors claim, and those they leave to other backends (the host's)."""
    try:
        executors = subject.registry.executors() if subject.backend.ok else []
    except Exception:  # a broken executor record: tier a reports it
        executors = []
    claimed = sorted({op for spec in executors for op in spec.ops})
    unclaimed = [op for op in _runnable_ops() if op not in claimed]
    return {"claimed": len(claimed), "unclaimed": len(unclaimed), "claimed_ops": claimed, "unclaimed_ops": unclaimed}
