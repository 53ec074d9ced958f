"""Tier a — the plugin contract (`spec/plugin-api.md`): records match their schemas, hooks have the right
signatures, detection is cheap, side-effect free and re-entrant, registration imports nothing heavy, names are
unique and refer to known devices."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hetagent.backend import Registry, hookspecs

from hetagent_conformance.subject import other_backends, unsupported

HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("hetagent_"))
# hook -> the registry method that calls it and checks every record it returns
RECORD_HOOKS = {
    "device_profiles": "hetagent_device_profiles",
    "detect": "hetagent_detect",
    "lowering_pipelines": "hetagent_lowering_pipelines",
    "executors": "hetagent_executors",
    "cost_models": "hetagent_cost_models",
}
OPTIONAL_HOOKS = ("cost_models",)  # offering nothing here is declining, not failing
# vendor SDKs, ML frameworks and runtimes: none may load when a backend is registered
HEAVY = ("torch", "iree", "cuda", "habana_frameworks", "intel_extension_for_pytorch", "ray", "jax", "tensorflow",
         "triton", "faiss", "hip", "pynvml", "amdsmi", "cupy", "onnxruntime", "transformers")
DETECT_BUDGET_S = 1.0
IMPORT_BUDGET_S = 0.5


@pytest.mark.parametrize("hook", list(RECORD_HOOKS))
def test_records_match_their_schemas(backend, hook):
    if not hasattr(backend.backend.module, RECORD_HOOKS[hook]):
        unsupported(f"implements no {RECORD_HOOKS[hook]}() (optional)")
    # a registry of its own: a bad record sets the backend aside, which must not spill into other tests
    records = getattr(Registry.load([backend.name]), hook)()  # PluginError naming the offending fields
    assert all(getattr(r, "backend", backend.name) == backend.name for r in records)
    if not records and hook in OPTIONAL_HOOKS:
        unsupported(f"{RECORD_HOOKS[hook]}() returns nothing (optional)")


def test_hooks_have_the_right_signatures(backend):
    """The registered plugin (a `Backend` instance) implements hooks with the hookspecs' arguments, each still
    marked as a hook (a subclass overrides the plain method, `detect`, never the hook `hetagent_detect`)."""
    plugin = backend.backend.module
    problems = []
    for name in dir(plugin):
        value = getattr(plugin, name, None)
        if not name.startswith("hetagent_") or not callable(value):
            continue
        if name not in HOOKS:
            problems.append(f"{name}: no such hook (misspelt? known hooks: {', '.join(HOOKS)})")
            continue
        wanted = list(inspect.signature(getattr(hookspecs, name)).parameters)
        if list(inspect.signature(value).parameters) != wanted:
            problems.append(f"{name}{inspect.signature(value)}: the hook takes ({', '.join(wanted)})")
        elif not hasattr(value, f"{hookspecs.PROJECT}_impl"):
            problems.append(f"{name}: not marked as a hook implementation (override the Backend method it calls, "
                            "not the hook)")
    if not hasattr(plugin, "hetagent_backend_info"):
        problems.append("hetagent_backend_info() is required")
    assert not problems, "; ".join(problems)


def _children() -> set[str]:
    """Child processes of this process (Linux /proc; empty elsewhere)."""
    found = set()
    for path in Path("/proc/self/task").glob("*/children"):
        found |= set(path.read_text().split())
    return found


def test_detection_is_cheap_side_effect_free_and_reentrant(backend):
    detect = getattr(backend.backend.module, "hetagent_detect", None)
    if detect is None:
        unsupported("implements no hetagent_detect()")
    environ, cwd, path, children = dict(os.environ), os.getcwd(), list(sys.path), _children()
    threads = threading.active_count()
    results, times = [], []
    for _ in range(3):
        start = time.perf_counter()
        results.append(detect())
        times.append(time.perf_counter() - start)
    with ThreadPoolExecutor(2) as pool:  # from other threads, at once
        results += list(pool.map(lambda _: detect(), range(2)))
    assert max(times) < DETECT_BUDGET_S, f"hetagent_detect() took {max(times):.2f} s (budget {DETECT_BUDGET_S} s)"
    assert all(r == results[0] for r in results), f"detection is not re-entrant: {results}"
    assert dict(os.environ) == environ, "hetagent_detect() changed environment variables"
    assert os.getcwd() == cwd and sys.path == path, "hetagent_detect() changed the working directory or sys.path"
    assert _children() <= children, f"hetagent_detect() left processes running: {_children() - children}"
    assert threading.active_count() <= threads, "hetagent_detect() left threads running"


def test_registration_imports_nothing_heavy(backend):
    """In a fresh interpreter, as `hetagent plugins` does: load the entry point, ask who the backend is."""
    code = f"""
import json, sys, time
import hetagent.backend
from hetagent.backend.registry import installed_backends
before, start = set(sys.modules), time.perf_counter()
plugin = installed_backends()[{backend.name!r}][0].load()
plugin = plugin() if isinstance(plugin, type) else plugin
plugin.hetagent_backend_info()
print(json.dumps({{"seconds": time.perf_counter() - start, "modules": sorted(set(sys.modules) - before)}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]
    loaded = json.loads(result.stdout.splitlines()[-1])
    heavy = sorted({m.split(".")[0] for m in loaded["modules"] if m.split(".")[0] in HEAVY})
    assert not heavy, f"registering the backend imports {', '.join(heavy)}: import them inside hook bodies"
    assert loaded["seconds"] < IMPORT_BUDGET_S, f"registering the backend took {loaded['seconds']:.2f} s"


def test_names_are_unique(backend):
    registry = backend.registry
    mine = {p.name for p in registry.device_profiles()}
    clashes = []
    for other in other_backends(backend.name):
        try:
            theirs = {p.name for p in Registry.load([other]).device_profiles()}
        except Exception:  # another backend's own breakage is its conformance run's business
            continue
        clashes += [f"{name} (also published by {other})" for name in sorted(mine & theirs)]
    assert not clashes, f"device profile names must be unique across backends: {', '.join(clashes)}"


def test_devices_named_are_known(backend):
    registry = backend.registry
    profiles = {p.name: p for p in registry.device_profiles()}
    known = set(profiles) | {p.kind for p in profiles.values()}
    problems = [f"pipeline for {p.device_kind!r}" for p in registry.lowering_pipelines() if p.device_kind not in known]
    problems += [f"executor {e.name!r} for {kind!r}" for e in registry.executors() for kind in e.device_kinds
                 if kind not in known]
    published = {p.name for p in Registry.load().device_profiles()}  # every installed backend's
    problems += [f"detected device {d.name!r} matched to {d.profile!r}" for det in registry.detect()
                 for d in det.devices if d.profile not in published]
    assert not problems, f"unknown device profile or kind: {'; '.join(problems)} (known here: {', '.join(sorted(known))})"
