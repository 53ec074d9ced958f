"""The typed registry around pluggy: discovers backends, checks them, and calls their hooks in isolation.

Discovery: entry points of the group `hetagent.backends` (the entry-point name is the backend id), in the order
`HETAGENT_BACKENDS` / `--backends` gives, or sorted by name. `HETAGENT_DISABLE_PLUGIN_AUTOLOAD=1` turns off the
entry-point scan (tests register what they need in code, or name backends explicitly).

Registration: an entry point names a `hetagent.backend.Backend` subclass (registered as an instance) or an
object with hook implementations.

Isolation: each backend's hook is called on its own. A backend that fails to import, speaks another major
plugin-API version, raises in a hook or returns records that break their schema is set aside with a warning and
the others keep working; a backend the user named explicitly fails loudly instead (`PluginError`).
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Iterable, Mapping, Sequence

import pluggy

from hetagent.errors import PluginError, RecordError
from hetagent.hardware.device import DeviceProfile
from hetagent.backend import hookspecs
from hetagent.backend.base import Backend
from hetagent.backend.hookspecs import PLUGIN_API_VERSION, PROJECT
from hetagent.backend.records import (
    RECORD_OF_HOOK,
    BackendInfo,
    CalibrationRun,
    CostTable,
    Detection,
    ExecutorSpec,
    LoweringPipeline,
)

ENTRY_POINT_GROUP = "hetagent.backends"
ENV_BACKENDS = "HETAGENT_BACKENDS"
ENV_DISABLE_AUTOLOAD = "HETAGENT_DISABLE_PLUGIN_AUTOLOAD"


class PluginWarning(UserWarning):
    """A backend was set aside; the message says which, why, and what to do."""


@dataclass(frozen=True)
class HostDevice:
    """This node's host CPU: the device profile and the backend that provides it (the reference backend)."""

    backend: str
    device: str


@dataclass
class LoadedBackend:
    name: str
    origin: str  # where it came from: "hetagent-cpu 0.1.0 (entry point hetagent_cpu)", "registered in code"
    status: str = "ok"  # ok | failed | skipped (another plugin-API major)
    reason: str = ""
    info: BackendInfo | None = None
    module: Any = None  # the registered object (a `Backend` instance)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def requested_backends(cli_value: str | None = None) -> list[str] | None:
    """The explicit backend order: `--backends` wins over `HETAGENT_BACKENDS`; None means "all installed"."""
    raw = cli_value if cli_value is not None else os.environ.get(ENV_BACKENDS)
    if raw is None or not raw.strip():
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    seen = set()
    for name in names:
        if name in seen:
            raise PluginError(f"backend {name!r} is named twice in the backend list {raw!r}")
        seen.add(name)
    return names


def installed_backends() -> dict[str, list[metadata.EntryPoint]]:
    """Entry points of the `hetagent.backends` group, by backend name (a name may be claimed twice)."""
    found: dict[str, list[metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


class Registry:
    def __init__(self, *, strict: Iterable[str] = ()):
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._backends: dict[str, LoadedBackend] = {}
        self._strict = set(strict)  # backends the user asked for by name: their failures are errors
        self._cache: dict[str, list] = {}

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        backends: Sequence[str] | None = None,
        *,
        autoload: bool | None = None,
        plugins: Mapping[str, Any] | None = None,
    ) -> "Registry":
        """Discover and register backends.

        backends: explicit names and order (default: `HETAGENT_BACKENDS`, else every installed backend).
        autoload: scan entry points (default: unless `HETAGENT_DISABLE_PLUGIN_AUTOLOAD` is set); named
            backends are always looked up.
        plugins: backends given as objects, by name (tests, embedding applications).
        """
        names = list(backends) if backends is not None else requested_backends()
        if autoload is None:
            autoload = os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() in ("", "0", "false", "no")
        plugins = dict(plugins or {})
        registry = cls(strict=names or ())
        entry_points = installed_backends() if (autoload or names) else {}
        if names is None:
            names = sorted(set(entry_points) | set(plugins)) if autoload else sorted(plugins)
        for name in names:
            if name in plugins:
                registry.register(name, plugins[name], origin="registered in code")
            elif name in entry_points:
                registry._load_entry_points(name, entry_points[name])
            else:
                installed = ", ".join(sorted(set(entry_points) | set(plugins))) or "none"
                raise PluginError(
                    f"backend {name!r} is not installed (entry-point group {ENTRY_POINT_GROUP!r}); "
                    f"installed backends: {installed}. Install it with `pip install hetagent-{name}` or fix "
                    f"the name in --backends / {ENV_BACKENDS}."
                )
        return registry

    def _load_entry_points(self, name: str, eps: list[metadata.EntryPoint]) -> None:
        ep = eps[0]
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
        origin = f"{dist} (entry point {ep.value})"
        if len(eps) > 1:
            others = ", ".join(f"{e.dist.name if e.dist else '?'} ({e.value})" for e in eps[1:])
            self._warn(f"backend name {name!r} is claimed by several distributions; using {origin}, ignoring {others}")
        try:
            module = within_time_limit(ep.load, f"importing {ep.value}")
        except BaseException as exc:  # noqa: BLE001 - a plugin's import must not take the core down (SystemExit too)
            if isinstance(exc, KeyboardInterrupt):
                raise
            backend = LoadedBackend(name=name, origin=origin)
            self._backends[name] = backend
            self._fail(backend, f"importing {ep.value} failed: {type(exc).__name__}: {exc}")
            return
        self.register(name, module, origin=origin)

    def register(self, name: str, module: Any, *, origin: str = "registered in code") -> LoadedBackend:
        """Register one backend object (a `Backend` subclass is instantiated) under `name`, checking its info
        record and plugin-API version."""
        if name in self._backends:
            raise PluginError(f"backend {name!r} is registered twice ({self._backends[name].origin}; {origin})")
        backend = LoadedBackend(name=name, origin=origin, module=module)
        self._backends[name] = backend
        try:
            if isinstance(module, type) and issubclass(module, Backend):
                backend.module = module = module()
        except Exception as exc:
            self._fail(backend, f"could not be instantiated: {type(exc).__name__}: {exc}")
            return backend
        try:
            self._pm.register(module, name=name)
        except Exception as exc:  # pluggy.PluginValidationError and friends
            self._fail(backend, f"does not fit the hook specification: {exc}")
            return backend
        try:
            info = self._call(backend, "hetagent_backend_info")
        except Exception as exc:
            self._fail(backend, str(exc))
            return backend
        if info is None:
            self._fail(backend, "does not implement the required hook hetagent_backend_info()")
            return backend
        if not isinstance(info, BackendInfo):
            self._fail(backend, f"hetagent_backend_info() returned {type(info).__name__}, expected BackendInfo")
            return backend
        try:
            info.validate()
        except RecordError as exc:
            self._fail(backend, str(exc))
            return backend
        backend.info = info
        if info.name != name:
            self._fail(backend, f"is registered as {name!r} but its backend info calls it {info.name!r}")
            return backend
        major, minor = (int(x) for x in info.plugin_api.split("."))
        core_major, core_minor = (int(x) for x in PLUGIN_API_VERSION.split("."))
        if major != core_major:
            self._fail(
                backend,
                f"is written for plugin API {info.plugin_api} but this hetagent speaks {PLUGIN_API_VERSION} "
                f"(major versions must match); install a hetagent-{name} release built for API {core_major}.x",
                status="skipped",
            )
        elif minor > core_minor:
            self._warn(
                f"backend {name!r} is written for plugin API {info.plugin_api}, newer than this hetagent's "
                f"{PLUGIN_API_VERSION}; hooks this version does not know are ignored"
            )
        return backend

    # ---------------------------------------------------------------- state

    @property
    def backends(self) -> list[LoadedBackend]:
        """Every backend seen, in order, including those set aside (with status and reason)."""
        return list(self._backends.values())

    def active(self) -> list[LoadedBackend]:
        return [b for b in self._backends.values() if b.ok]

    def backend(self, name: str) -> LoadedBackend:
        try:
            backend = self._backends[name]
        except KeyError:
            raise PluginError(
                f"backend {name!r} is not loaded; loaded backends: {', '.join(self._backends) or 'none'}"
            ) from None
        return backend

    # ---------------------------------------------------------------- typed hook calls

    def device_profiles(self) -> list[DeviceProfile]:
        """Every profile of every active backend, validated; a name two backends claim is kept once."""
        return self._collect("hetagent_device_profiles", key=lambda p: p.name)

    def profile(self, name: str) -> DeviceProfile:
        profiles = {p.name: p for p in self.device_profiles()}
        if name not in profiles:
            raise PluginError(f"unknown device {name!r}; known devices: {', '.join(sorted(profiles))}")
        return profiles[name]

    def detect(self) -> list[Detection]:
        """One detection per active backend that implements the hook."""
        return self._collect("hetagent_detect", key=lambda d: d.backend)

    def lowering_pipelines(self) -> list[LoweringPipeline]:
        return self._collect("hetagent_lowering_pipelines", key=lambda p: (p.backend, p.device_kind))

    def executors(self) -> list[ExecutorSpec]:
        return self._collect("hetagent_executors", key=lambda e: (e.backend, e.name))

    def cost_models(self) -> list[CostTable]:
        return self._collect("hetagent_cost_models", key=lambda t: (t.backend, t.device, t.op_class, t.dtype))

    @property
    def host(self) -> HostDevice:
        """This node's host CPU and its backend: from the one active backend whose info declares `host_device`."""
        hosts = [HostDevice(b.name, b.info.host_device) for b in self.active() if b.info and b.info.host_device]
        if not hosts:
            raise PluginError("no loaded backend provides the host device (BackendInfo.host_device): install or "
                              f"enable the reference CPU backend; loaded: {', '.join(self._backends) or 'none'}")
        return hosts[0]  # the first in priority order (section 2 of the plugin API)

    def executor_for(self, backend: str, device: str, op: str) -> ExecutorSpec | None:
        """The executor `backend` declares for `op` on `device` (by profile name, or by the profile's kind)."""
        kinds = {device, self.profile(device).kind}
        return next((spec for spec in self.executors()
                     if spec.backend == backend and op in spec.ops and kinds & set(spec.device_kinds)), None)

    def executor_class(self, op: str, device: str, backend: str | None = None) -> type:
        """The class of the executor that runs `op` on `device` (default backend: the device's own), imported."""
        import importlib

        backend = backend or self.profile(device).backend
        spec = self.executor_for(backend, device, op)
        if spec is None:
            raise PluginError(f"no {backend} executor claims {op} on {device}")
        module, _, name = spec.factory.partition(":")
        return getattr(importlib.import_module(module), name)

    def calibrate(self, backend: str, device: str, *, quick: bool = False, progress=None) -> CalibrationRun | None:
        """One backend's calibration run on `device`; None when it does not calibrate that device."""
        loaded = self.backend(backend)
        run = self._call(loaded, "hetagent_calibrate", device=device, quick=quick, progress=progress)
        if run is None:
            return None
        if not isinstance(run, CalibrationRun):
            raise PluginError(f"backend {backend!r}: hetagent_calibrate() returned {type(run).__name__}, expected "
                              "CalibrationRun")
        run.validate()
        return run

    # ---------------------------------------------------------------- internals

    def _call(self, backend: LoadedBackend, hook_name: str, **arguments) -> Any:
        """Call one backend's implementation of a hook; None when it does not implement it."""
        hook = getattr(self._pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            if impl.plugin_name == backend.name:
                try:
                    if hook_name in TIMED_HOOKS:
                        return within_time_limit(lambda: impl.function(**arguments), f"hook {hook_name}()")
                    return impl.function(**arguments)
                except PluginError:
                    raise
                except BaseException as exc:  # noqa: BLE001 - SystemExit from a plugin is its failure, not ours
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    raise PluginError(f"hook {hook_name}() raised {type(exc).__name__}: {exc}") from exc
        return None

    def _collect(self, hook_name: str, key) -> list:
        if hook_name in self._cache:
            return self._cache[hook_name]
        record_type = RECORD_OF_HOOK[hook_name]
        collected: list = []
        owner: dict[Any, str] = {}
        for backend in self.active():
            try:
                result = self._call(backend, hook_name)
                records = [] if result is None else list(result) if isinstance(result, (list, tuple)) else [result]
                mine: dict[Any, Any] = {}
                for record in records:
                    if not isinstance(record, record_type):
                        raise RecordError(
                            f"{hook_name}() returned a {type(record).__name__}, expected {record_type.__name__}"
                        )
                    record.validate()
                    if getattr(record, "backend", backend.name) != backend.name:
                        raise RecordError(
                            f"{hook_name}() returned a record for backend {record.backend!r}, not {backend.name!r}"
                        )
                    if key(record) in mine:
                        raise RecordError(f"{hook_name}() returned {key(record)!r} twice")
                    mine[key(record)] = record
            except Exception as exc:  # a record whose own check crashes breaks the contract as much as a bad field
                if not isinstance(exc, PluginError):
                    exc = RecordError(f"{hook_name}() returned a malformed record: {type(exc).__name__}: {exc}")
                self._fail(backend, str(exc))
                return self._collect(hook_name, key)  # start over without the failed backend
            for k, record in mine.items():
                if k in owner:
                    self._warn(
                        f"{record_type.__name__} {k!r} from backend {backend.name!r} duplicates the one from "
                        f"backend {owner[k]!r}; keeping {owner[k]!r}'s"
                    )
                    continue
                owner[k] = backend.name
                collected.append(record)
        self._cache[hook_name] = collected
        return collected

    def _fail(self, backend: LoadedBackend, reason: str, *, status: str = "failed") -> None:
        backend.status, backend.reason = status, reason
        self._cache.clear()  # records collected before the failure may include this backend's
        message = f"backend {backend.name!r} ({backend.origin}) {reason}"
        if not message.endswith("."):
            message += "."
        if backend.name in self._strict:
            raise PluginError(message + " It was requested explicitly (--backends / HETAGENT_BACKENDS).")
        self._warn(message + " It is set aside; the other backends keep working.")

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(message, PluginWarning, stacklevel=3)


PLUGIN_CALL_TIMEOUT_S = float(os.environ.get("HETAGENT_PLUGIN_TIMEOUT_S", 30))
TIMED_HOOKS = ("hetagent_detect",)  # touches hardware and drivers; the others only build records


def within_time_limit(function, what: str):
    """`function()`, on a daemon thread so that a plugin that hangs (in its import, in `detect`) is abandoned after
    PLUGIN_CALL_TIMEOUT_S rather than hanging the command; what it raises is re-raised here."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(_capture(function)), daemon=True,
                              name="hetagent-plugin-call")
    thread.start()
    thread.join(PLUGIN_CALL_TIMEOUT_S)
    if not outcome:
        raise PluginError(f"{what} did not finish within {PLUGIN_CALL_TIMEOUT_S:g} s "
                          "(HETAGENT_PLUGIN_TIMEOUT_S); the call is abandoned")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _capture(function):
    try:
        return True, function()
    except BaseException as exc:  # noqa: BLE001 - carried to the caller's thread
        return False, exc
