"""`Backend`: the class every backend subclasses (`spec/plugin-api.md`, section 4).

pluggy registers plugin objects: a backend's entry point names its `Backend` subclass (or an instance of it),
and the registry registers an instance. The hook implementations live here, once; each calls a plain method
with a default, so a backend sets its class attributes and overrides only what differs — as a vLLM `Platform`
subclass does. The defaults read the rooms every backend package has (`spec/plugin-api.md`, section 8):
`profiles.PROFILES`, `detect.detect()`, `lowering.pipelines()` of the subclass's own package, where present.
Executors and pipeline stages are named by "module:attribute" strings, so listing a backend never imports its
vendor SDK.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, ClassVar

from hetagent.backend.hookspecs import hookimpl
from hetagent.backend.records import (
    BackendInfo,
    CalibrationRun,
    CostTable,
    Detection,
    ExecutorSpec,
    LoweringPipeline,
)
from hetagent.hardware.device import DeviceProfile


class Backend:
    """One family of hardware. Subclasses set `name`, `vendor` and `plugin_api` (a literal: the API version the
    backend is written against, so a major mismatch shows), and override what they offer."""

    name: ClassVar[str]  # the backend id: equals the entry-point name
    vendor: ClassVar[str]
    plugin_api: ClassVar[str]
    version: ClassVar[str] = "0.0.0"
    summary: ClassVar[str] = ""
    host_device: ClassVar[str] = ""  # the profile of this node's CPU, for the backend that provides it
    executor_specs: ClassVar[tuple[ExecutorSpec, ...]] = ()  # what `executors()` returns by default

    # ---------------------------------------------------------------- what a backend overrides

    def profiles(self) -> list[DeviceProfile]:
        """The device classes this backend knows (planning uses them whether or not the hardware is here).
        Default: the `PROFILES` of the package's `profiles` room."""
        room = self._room("profiles")
        return list(room.PROFILES) if room else []

    def detect(self) -> Detection:
        """The devices present on this node. Cheap, side-effect free, re-entrant. Default: the `detect` room's
        `detect()`."""
        room = self._room("detect")
        if room:
            return room.detect()
        return Detection(self.name, available=False, reason="this backend detects no devices",
                         hint="it offers device profiles for planning only")

    def pipelines(self) -> list[LoweringPipeline]:
        """Per device kind, the stages that turn a kernel into an artifact. Default: the `lowering` room's
        `pipelines()`."""
        room = self._room("lowering")
        return room.pipelines() if room else []

    def executors(self) -> list[ExecutorSpec]:
        """The executors this backend offers and the ops each claims. Default: `executor_specs`."""
        return list(self.executor_specs)

    def cost_tables(self) -> list[CostTable]:
        """Measured latency tables, preferred over the roofline model."""
        return []

    def calibrate(self, device: str, quick: bool, progress: Callable[[int, int, str], None] | None) -> CalibrationRun | None:
        """Time this backend's kernels on `device`; None when it cannot."""
        return None

    # ---------------------------------------------------------------- the hooks pluggy calls (do not override)

    @hookimpl
    def hetagent_backend_info(self) -> BackendInfo:
        return BackendInfo(name=self.name, version=self.version, plugin_api=self.plugin_api, vendor=self.vendor,
                           summary=self.summary, host_device=self.host_device)

    @hookimpl
    def hetagent_device_profiles(self) -> list[DeviceProfile]:
        return list(self.profiles())

    @hookimpl
    def hetagent_detect(self) -> Detection:
        return self.detect()

    @hookimpl
    def hetagent_lowering_pipelines(self) -> list[LoweringPipeline]:
        return list(self.pipelines())

    @hookimpl
    def hetagent_executors(self) -> list[ExecutorSpec]:
        return list(self.executors())

    @hookimpl
    def hetagent_cost_models(self) -> list[CostTable]:
        return list(self.cost_tables())

    @hookimpl
    def hetagent_calibrate(self, device: str, quick: bool, progress) -> CalibrationRun | None:
        return self.calibrate(device, quick, progress)

    def _room(self, name: str):
        """The module `name` of the package this class (or the nearest base that has one) is defined in."""
        for cls in type(self).__mro__:
            if cls is Backend:
                return None
            package = cls.__module__.split(".")[0]
            try:
                if importlib.util.find_spec(f"{package}.{name}") is not None:
                    return importlib.import_module(f"{package}.{name}")
            except (ImportError, ValueError):  # defined in a plain module, not a package: no rooms there
                continue
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend {getattr(self, 'name', '?')!r}>"
