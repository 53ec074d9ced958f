"""The backend under test: its registry, its conformance manifest, its device, and how the suite builds kernels
and runs ops on it.

How a backend declines (outcome "unsupported", `spec/conformance.md`): for a granular op, no `ExecutorSpec`
claims it on the device; for a kernel, the backend has no lowering pipeline for the device, declares no kernel
runner, or a lowering stage raises `hetagent.errors.UnsupportedError`. Anything else that raises is a failure.
"""

from __future__ import annotations

import importlib
import itertools
import re
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import pytest

from hetagent.compiler.cache import CompileCache
from hetagent.errors import HetagentError, UnsupportedError
from hetagent.backend import Registry
from hetagent.backend.registry import installed_backends

MANIFEST_FILE = "conformance.toml"
UNSUPPORTED = "unsupported: "  # the skip-reason prefix that makes a skip an "unsupported" outcome


def unsupported(reason: str):
    """Record that the backend declines what this test exercises (not a failure)."""
    pytest.skip(UNSUPPORTED + reason)


@dataclass(frozen=True)
class Manifest:
    """A backend's `conformance.toml`: expected failures and skips (test-id globs -> reason), and its kernel
    runner ("module:function", `runner(artifact, symbol, device) -> f(*numpy arrays) -> tuple of arrays`)."""

    source: str
    runner: str | None = None
    xfail: dict[str, str] = field(default_factory=dict)
    skip: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, package: str) -> "Manifest":
        """The manifest shipped in the backend's package (package data), or an empty one."""
        path = resources.files(package) / MANIFEST_FILE
        if not path.is_file():
            return cls(source=f"none ({package} ships no {MANIFEST_FILE})")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise HetagentError(f"{path}: not valid TOML: {exc}") from None
        unknown = set(data) - {"runner", "xfail", "skip"}
        if unknown:
            raise HetagentError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: runner, xfail, skip")
        for section in ("xfail", "skip"):
            empty = [k for k, reason in data.get(section, {}).items() if not str(reason).strip()]
            if empty:
                raise HetagentError(f"{path}: [{section}] entries need a reason: {', '.join(empty)}")
        return cls(str(path), data.get("runner"), dict(data.get("xfail", {})), dict(data.get("skip", {})))

    def expectation(self, test_id: str) -> tuple[str, str, str] | None:
        """("skip" | "xfail", pattern, reason) of the first entry matching `test_id` (skips first)."""
        for kind, entries in (("skip", self.skip), ("xfail", self.xfail)):
            for pattern, reason in entries.items():
                if _glob(pattern).fullmatch(test_id):
                    return kind, pattern, reason
        return None


def _glob(pattern: str) -> re.Pattern:
    """`*` matches any run of characters, `?` one; everything else, brackets of test ids included, is literal."""
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."))


class Subject:
    """One backend, loaded on its own and explicitly (so every contract violation is an error)."""

    def __init__(self, name: str, cache: CompileCache):
        self.name = name
        self.cache = cache
        self.registry = Registry.load([name])
        self.backend = self.registry.backend(name)
        plugin = self.backend.module  # a Backend instance (plugin API 2), or a module of hook functions
        self.package = getattr(plugin, "__name__", type(plugin).__module__).split(".")[0]
        self.manifest = Manifest.of(self.package)
        self.run_id = f"hc{uuid.uuid4().hex[:10]}"  # prefix for the shared-memory segments tests create
        self.compiles: list[dict] = []  # every kernel built for the report: kernel, device, seconds, cache
        self._tasks = itertools.count(1)

    def next_task(self) -> int:
        """A fresh task id for a Call (segment names derive from it)."""
        return next(self._tasks)

    @cached_property
    def reference(self) -> str:
        """The reference backend: the installed one that provides the host device (this one, if it does)."""
        import warnings

        if self.registry.active() and self.backend.info and self.backend.info.host_device:
            return self.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a broken neighbour is not this backend's business
            return Registry.load(autoload=True, backends=None).host.backend

    @cached_property
    def detection(self):
        (detection,) = self.registry.detect() or (None,)
        return detection

    @cached_property
    def device(self) -> str | None:
        """The profile of the first device detection finds here, or None."""
        d = self.detection
        return d.devices[0].profile if d is not None and d.available and d.devices else None

    def need_device(self) -> str:
        """This node's device of the backend, or skip: a missing device is never a failure."""
        if self.device is None:
            d = self.detection
            why = "the backend implements no hetagent_detect()" if d is None else d.reason or "no device found"
            pytest.skip(f"no {self.name} device on this node: {why}")
        return self.device

    # ------------------------------------------------------------------ kernels

    def pipeline(self, device: str):
        from hetagent.compiler.pipelines import find_pipeline

        pipeline = find_pipeline(self.registry, self.name, device)
        if pipeline is None:
            unsupported(f"no {self.name} lowering pipeline for {device}")
        return pipeline

    def build(self, source: str, symbol: str, device: str) -> Path:
        """The artifact of a clean module's kernel for `device`, through the compile cache."""
        from hetagent.compiler.lower import artifact_key
        from hetagent.compiler.pipelines import run_pipeline
        from hetagent.ir.module import new_context, parse

        pipeline = self.pipeline(device)
        key = artifact_key(source, pipeline)
        path = self.cache.path("artifacts", key, pipeline.artifact)
        hit = path.exists()
        start = time.perf_counter()
        if not hit:
            try:
                artifact = run_pipeline(pipeline, parse(source, context=new_context()), f"kernel @{symbol}")
            except UnsupportedError as exc:
                unsupported(str(exc))
            self.cache.put("artifacts", key, pipeline.artifact, artifact)
        self.compiles.append({"kernel": symbol, "device": device, "seconds": round(time.perf_counter() - start, 3),
                              "cache": "hit" if hit else "miss"})
        return path

    def need_runner(self) -> None:
        self.need_device()  # a missing device is reported as such, whatever else is missing
        if not self.manifest.runner:
            unsupported(f"{self.manifest.source} declares no kernel runner")

    def runner(self, artifact: Path, symbol: str, device: str):
        """The kernel as a numpy function, through the manifest's runner; unsupported without one."""
        self.need_runner()
        module, _, function = self.manifest.runner.partition(":")
        return getattr(importlib.import_module(module), function)(artifact, symbol, device)

    # ------------------------------------------------------------------ executors

    def factory(self, op: str, device: str) -> str | None:
        spec = self.registry.executor_for(self.name, device, op)
        return spec.factory if spec else None

    def executor_class(self, op: str, device: str):
        """The class of the backend's executor for `op` on `device`; unsupported if none claims it."""
        if self.factory(op, device) is None:
            unsupported(f"no {self.name} executor claims {op} on {device}")
        return self.registry.executor_class(op, device, self.name)

    def executor(self, op: str, device: str, *, kernels=(), stores=None):
        """The backend's executor for `op` on `device`, built as a worker builds it (on the first detected device
        of that profile); unsupported if none claims it."""
        from hetagent.backend.executor import WorkerContext

        cls = self.executor_class(op, device)
        index = next((d.index for d in self.detection.devices if d.profile == device), None) if self.detection else None
        context = WorkerContext(worker=f"{device}:conformance", device=device, cores=(), kernels=tuple(kernels),
                                run_id=self.run_id, cache_dir=str(self.cache.root), stores=dict(stores or {}),
                                device_index=index)
        return cls(context)


def other_backends(name: str) -> list[str]:
    return sorted(set(installed_backends()) - {name})
