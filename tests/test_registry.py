"""Unit tests of the plugin `Registry`, with backends registered in code (no entry points, no install)."""

from __future__ import annotations

import dataclasses
import types
import warnings

import pytest

from hetagent.errors import PluginError
from hetagent.hardware.device import DeviceProfile, Link
from hetagent.backend import (
    PLUGIN_API_VERSION,
    BackendInfo,
    DetectedDevice,
    Detection,
    ExecutorSpec,
    LoweringPipeline,
    PluginWarning,
    Registry,
    Stage,
    hookimpl,
)
from hetagent.backend.registry import ENV_BACKENDS, ENV_DISABLE_AUTOLOAD, requested_backends

SRC = "test fixture"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(ENV_BACKENDS, raising=False)
    monkeypatch.delenv(ENV_DISABLE_AUTOLOAD, raising=False)


def profile(name: str, backend: str, **changes) -> DeviceProfile:
    fields = dict(
        name=name,
        display_name=name.upper(),
        vendor="acme",
        kind="accelerator",
        backend=backend,
        peak_tflops={"bf16": 100.0},
        memory_gb=16.0,
        memory_bandwidth_gbs=500.0,
        tdp_w=200.0,
        scale_up=Link("acme-link", 50.0),
        sources={"peak_tflops": SRC, "memory_gb": SRC, "memory_bandwidth_gbs": SRC, "tdp_w": SRC, "scale_up": SRC},
    )
    fields.update(changes)
    return DeviceProfile(**fields)


def pipeline(backend: str, **changes) -> LoweringPipeline:
    fields = dict(
        backend=backend,
        device_kind="accelerator",
        stages=(Stage("canon", "mlir", "builtin.module(canonicalize)"), Stage("pack", "python", "pkg.mod:pack")),
        target_options={"arch": "x1"},
    )
    fields.update(changes)
    return LoweringPipeline(**fields)


def make_backend(name: str, *, info=..., profiles=None, detect=None, pipelines=None, executors=None, **extra):
    """A plugin object (a namespace of @hookimpl functions) for backend `name`.

    Each argument is what the hook returns; a callable is the hook body (to raise, say); None leaves the hook out.
    `info=...` means a valid BackendInfo for `name`.
    """
    if info is ...:
        info = BackendInfo(name=name, version="1.2.3", plugin_api=PLUGIN_API_VERSION, vendor="acme")
    returns = {
        "hetagent_backend_info": info,
        "hetagent_device_profiles": profiles,
        "hetagent_detect": detect,
        "hetagent_lowering_pipelines": pipelines,
        "hetagent_executors": executors,
        **extra,
    }
    ns = types.SimpleNamespace()
    for hook, value in returns.items():
        if value is None:
            continue

        setattr(ns, hook, hookimpl(_hook(hook, value)))
    return ns


def _hook(name: str, value):
    # pluggy reads a hookimpl's arguments from its signature, so the hook takes none (no default-bound values)
    def impl():
        return value() if callable(value) else value

    impl.__name__ = name
    return impl


def load(*plugins: tuple[str, object], backends=None) -> Registry:
    return Registry.load(backends=backends, autoload=False, plugins=dict(plugins))


def raises(exc: Exception):
    def hook():
        raise exc

    return hook


# ------------------------------------------------------------------ loading and backend info


def test_valid_backend_loads_and_its_records_come_back():
    detection = Detection("a", True, (DetectedDevice("a-npu", 0, "A NPU #0"),))
    executor = ExecutorSpec("a", "a-llm", ("llm.prefill",), ("a-npu",), "pkg.exec:Executor")
    plugin = make_backend(
        "a", profiles=[profile("a-npu", "a")], detect=detection, pipelines=[pipeline("a")], executors=[executor]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = load(("a", plugin))
        assert [b.name for b in registry.active()] == ["a"]
        backend = registry.backend("a")
        assert backend.ok and backend.info.version == "1.2.3" and backend.origin == "registered in code"
        assert [p.name for p in registry.device_profiles()] == ["a-npu"]
        assert registry.profile("a-npu").memory_gb == 16.0
        assert registry.detect() == [detection]
        assert registry.lowering_pipelines() == [pipeline("a")]
        assert registry.executors() == [executor]
        assert registry.cost_models() == []  # an optional hook left out is no error


def test_order_follows_backends_argument_else_sorted_names():
    plugins = {n: make_backend(n, profiles=[profile(f"{n}-npu", n)]) for n in ("b", "a", "c")}
    assert [b.name for b in Registry.load(autoload=False, plugins=plugins).backends] == ["a", "b", "c"]
    plugins = {n: make_backend(n, profiles=[profile(f"{n}-npu", n)]) for n in ("b", "a", "c")}
    registry = Registry.load(backends=["c", "a"], autoload=False, plugins=plugins)
    assert [b.name for b in registry.backends] == ["c", "a"]
    assert [p.name for p in registry.device_profiles()] == ["c-npu", "a-npu"]


def test_unknown_backend_name_is_an_error_naming_installed_ones():
    with pytest.raises(PluginError, match=r"'nosuch' is not installed.*installed backends: .*\ba\b"):
        Registry.load(backends=["nosuch"], autoload=False, plugins={"a": make_backend("a")})


def test_missing_backend_info_fails():
    with pytest.warns(PluginWarning, match=r"'a'.*hetagent_backend_info"):
        registry = load(("a", make_backend("a", info=None, profiles=[profile("a-npu", "a")])), ("b", make_backend("b")))
    assert registry.backend("a").status == "failed"
    assert "hetagent_backend_info" in registry.backend("a").reason
    assert [b.name for b in registry.active()] == ["b"]
    assert registry.device_profiles() == []  # a failed backend's hooks are never called


def test_backend_info_of_wrong_type_fails():
    with pytest.warns(PluginWarning, match="expected BackendInfo"):
        registry = load(("a", make_backend("a", info={"name": "a"})))
    assert registry.backend("a").status == "failed"


def test_invalid_backend_info_fails_naming_the_field():
    bad = BackendInfo(name="a", version="1", plugin_api="one", vendor="acme")
    with pytest.warns(PluginWarning, match="plugin_api 'one'"):
        registry = load(("a", make_backend("a", info=bad)))
    assert registry.backend("a").status == "failed"


def test_info_name_must_equal_registered_name():
    info = BackendInfo(name="other", version="1", plugin_api=PLUGIN_API_VERSION, vendor="acme")
    with pytest.warns(PluginWarning, match=r"registered as 'a' but its backend info calls it 'other'"):
        registry = load(("a", make_backend("a", info=info)))
    assert registry.backend("a").status == "failed"


def test_plugin_api_major_mismatch_is_skipped_naming_both_versions():
    info = BackendInfo(name="a", version="1", plugin_api="1.1", vendor="acme")  # a backend from before API 2.0
    with pytest.warns(PluginWarning) as record:
        registry = load(("a", make_backend("a", info=info, profiles=[profile("a-npu", "a")])), ("b", make_backend("b")))
    backend = registry.backend("a")
    assert backend.status == "skipped" and not backend.ok
    assert "1.1" in backend.reason and PLUGIN_API_VERSION in backend.reason
    assert any("1.1" in str(w.message) and PLUGIN_API_VERSION in str(w.message) for w in record)
    assert [b.name for b in registry.active()] == ["b"]
    assert registry.device_profiles() == []


def test_newer_plugin_api_minor_loads_with_a_warning():
    major = PLUGIN_API_VERSION.split(".")[0]
    info = BackendInfo(name="a", version="1", plugin_api=f"{major}.9", vendor="acme")
    with pytest.warns(PluginWarning, match=rf"{major}\.9.*newer"):
        registry = load(("a", make_backend("a", info=info, profiles=[profile("a-npu", "a")])))
    assert registry.backend("a").ok
    assert [p.name for p in registry.device_profiles()] == ["a-npu"]


def test_older_plugin_api_minor_loads_silently():
    major = PLUGIN_API_VERSION.split(".")[0]
    info = BackendInfo(name="a", version="1", plugin_api=f"{major}.0", vendor="acme")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = load(("a", make_backend("a", info=info)))
    assert registry.backend("a").ok


def test_a_plugin_that_does_not_fit_the_hookspec_fails():
    ns = types.SimpleNamespace()

    @hookimpl
    def hetagent_device_profiles(unexpected_argument):
        return []

    ns.hetagent_backend_info = make_backend("a").hetagent_backend_info
    ns.hetagent_device_profiles = hetagent_device_profiles
    with pytest.warns(PluginWarning, match="hook specification"):
        registry = load(("a", ns))
    assert registry.backend("a").status == "failed"


def test_registering_a_name_twice_is_an_error():
    registry = load(("a", make_backend("a")))
    with pytest.raises(PluginError, match="registered twice"):
        registry.register("a", make_backend("a"))


def test_backend_lookup_of_unloaded_name_is_an_error():
    with pytest.raises(PluginError, match="'zzz' is not loaded; loaded backends: a"):
        load(("a", make_backend("a"))).backend("zzz")


# ------------------------------------------------------------------ isolation of hook failures


def test_a_raising_hook_fails_that_backend_only():
    bad = make_backend("bad", profiles=raises(RuntimeError("driver exploded")))
    good = make_backend("good", profiles=[profile("good-npu", "good")])
    registry = load(("bad", bad), ("good", good))
    with pytest.warns(PluginWarning, match=r"'bad'.*hetagent_device_profiles\(\) raised RuntimeError: driver exploded"):
        profiles = registry.device_profiles()
    assert [p.name for p in profiles] == ["good-npu"]
    assert registry.backend("bad").status == "failed"
    assert "driver exploded" in registry.backend("bad").reason
    assert [b.name for b in registry.active()] == ["good"]


def test_a_raising_backend_info_fails_at_load():
    with pytest.warns(PluginWarning, match="hetagent_backend_info.*ValueError: nope"):
        registry = load(("a", make_backend("a", info=raises(ValueError("nope")))), ("b", make_backend("b")))
    assert registry.backend("a").status == "failed"
    assert registry.backend("b").ok


def test_a_failure_in_one_hook_removes_the_backend_from_every_hook():
    bad = make_backend("bad", profiles=[profile("bad-npu", "bad")], detect=raises(OSError("no /dev/bad")))
    good = make_backend("good", profiles=[profile("good-npu", "good")])
    registry = load(("bad", bad), ("good", good))
    assert [p.name for p in registry.device_profiles()] == ["bad-npu", "good-npu"]
    with pytest.warns(PluginWarning, match="no /dev/bad"):
        assert registry.detect() == []
    # the profiles collected before the failure are recomputed without the failed backend
    assert [p.name for p in registry.device_profiles()] == ["good-npu"]


@pytest.mark.parametrize(
    "bad_profile, field",
    [
        (dict(display_name=""), "display_name must be a non-empty string"),
        (dict(sources={}), "has no source"),
        (dict(sources={"peak_tflops": SRC}), "memory_gb has no source"),
        (dict(memory_bandwidth_gbs=-1.0), "memory_bandwidth_gbs = -1.0"),
        (dict(memory_gb=float("nan")), "memory_gb = nan"),
        (dict(tdp_w=True), "tdp_w = True"),
        (dict(peak_tflops={"bf17": 1.0}), "unknown dtype 'bf17'"),
        (dict(peak_tflops={}), "peak_tflops needs at least one dtype"),
        (dict(kind="fpga"), "kind 'fpga'"),
        (dict(vendor=None), "vendor must be a non-empty string"),
        (dict(scale_up=Link("x", 0.0)), "scale_up must be a Link"),
        (dict(cores=0), "cores = 0"),
    ],
)
def test_an_invalid_device_profile_fails_the_backend_naming_the_field(bad_profile, field):
    bad = make_backend("bad", profiles=[profile("bad-npu", "bad", **bad_profile)])
    good = make_backend("good", profiles=[profile("good-npu", "good")])
    registry = load(("bad", bad), ("good", good))
    with pytest.warns(PluginWarning, match="'bad'") as record:
        assert [p.name for p in registry.device_profiles()] == ["good-npu"]
    assert any(field in str(w.message) for w in record), [str(w.message) for w in record]
    assert registry.backend("bad").status == "failed" and field in registry.backend("bad").reason


@pytest.mark.parametrize(
    "hook, value, message",
    [
        ("profiles", [pipeline("bad")], "returned a LoweringPipeline, expected DeviceProfile"),
        ("pipelines", [profile("bad-npu", "bad")], "returned a DeviceProfile, expected LoweringPipeline"),
        ("detect", "available", "returned a str, expected Detection"),
        ("executors", [None], "returned a NoneType, expected ExecutorSpec"),
    ],
)
def test_a_record_of_the_wrong_type_fails_the_backend(hook, value, message):
    registry = load(("bad", make_backend("bad", **{hook: value})))
    collect = {
        "profiles": registry.device_profiles,
        "pipelines": registry.lowering_pipelines,
        "detect": registry.detect,
        "executors": registry.executors,
    }[hook]
    with pytest.warns(PluginWarning, match=message):
        assert collect() == []
    assert registry.backend("bad").status == "failed"


@pytest.mark.parametrize(
    "hook, value, message",
    [
        ("detect", Detection("bad", True, ()), "an available backend must list at least one device"),
        ("detect", Detection("bad", False), "an unavailable backend must give a reason"),
        ("pipelines", [pipeline("bad", stages=())], "at least one stage"),
        ("pipelines", [pipeline("bad", stages=(Stage("s", "llvm", "x"),))], "kind 'llvm'"),
        ("pipelines", [pipeline("bad", stages=(Stage("s", "python", "no_colon"),))], "'module:function'"),
        ("pipelines", [pipeline("bad", stages=(Stage("s", "mlir", "a"), Stage("s", "mlir", "b")))], "unique"),
        ("executors", [ExecutorSpec("bad", "e", (), ("gpu",), "m:C")], "ops must name at least one op"),
        ("executors", [ExecutorSpec("bad", "e", ("llm.decode",), ("gpu",), "m.C")], "factory 'm.C'"),
    ],
)
def test_other_invalid_records_fail_the_backend(hook, value, message):
    registry = load(("bad", make_backend("bad", **{hook: value})))
    collect = {"detect": registry.detect, "pipelines": registry.lowering_pipelines, "executors": registry.executors}
    with pytest.warns(PluginWarning, match=message):
        assert collect[hook]() == []
    assert registry.backend("bad").status == "failed"


def test_a_record_whose_check_crashes_fails_the_backend_instead_of_the_caller():
    # a stage that is not a Stage makes LoweringPipeline.validate() raise AttributeError, not RecordError
    bad = make_backend("bad", pipelines=[pipeline("bad", stages=("canonicalize",))])
    good = make_backend("good", pipelines=[pipeline("good")])
    registry = load(("bad", bad), ("good", good))
    with pytest.warns(PluginWarning, match=r"'bad'.*malformed record: AttributeError"):
        assert registry.lowering_pipelines() == [pipeline("good")]
    assert registry.backend("bad").status == "failed"


def test_a_profile_name_that_is_no_id_fails_the_backend():
    registry = load(("bad", make_backend("bad", profiles=[profile("A NPU", "bad")])))
    with pytest.warns(PluginWarning, match=r"name 'A NPU' must be a lowercase id"):
        assert registry.device_profiles() == []


def test_a_record_for_another_backend_fails_the_backend():
    registry = load(("a", make_backend("a", profiles=[profile("x-npu", "b")])))
    with pytest.warns(PluginWarning, match="record for backend 'b', not 'a'"):
        assert registry.device_profiles() == []
    assert registry.backend("a").status == "failed"


def test_same_profile_from_two_backends_is_kept_once_with_a_warning_naming_both():
    first = profile("shared-npu", "a", memory_gb=16.0)
    second = profile("shared-npu", "b", memory_gb=32.0)
    registry = load(("a", make_backend("a", profiles=[first])), ("b", make_backend("b", profiles=[second])))
    with pytest.warns(PluginWarning, match=r"'shared-npu' from backend 'b' duplicates the one from backend 'a'"):
        profiles = registry.device_profiles()
    assert profiles == [first]
    assert registry.backend("a").ok and registry.backend("b").ok  # both keep working


def test_a_duplicate_within_one_backend_fails_it():
    dup = [profile("a-npu", "a"), profile("a-npu", "a", memory_gb=32.0)]
    registry = load(("a", make_backend("a", profiles=dup)), ("b", make_backend("b", profiles=[profile("b-npu", "b")])))
    with pytest.warns(PluginWarning, match="'a-npu' twice"):
        assert [p.name for p in registry.device_profiles()] == ["b-npu"]
    assert registry.backend("a").status == "failed"


def test_unknown_profile_lookup_names_the_known_ones():
    registry = load(("a", make_backend("a", profiles=[profile("a-npu", "a")])))
    with pytest.raises(PluginError, match="unknown device 'b-npu'; known devices: a-npu"):
        registry.profile("b-npu")


# ------------------------------------------------------------------ strict mode: backends named explicitly


def test_explicitly_named_backend_that_fails_at_load_is_an_error():
    with pytest.raises(PluginError, match=r"'a'.*hetagent_backend_info.*requested explicitly"):
        load(("a", make_backend("a", info=None)), backends=["a"])


def test_explicitly_named_backend_with_another_major_is_an_error():
    info = BackendInfo(name="a", version="1", plugin_api="1.1", vendor="acme")
    with pytest.raises(PluginError, match=rf"1\.1.*{PLUGIN_API_VERSION}"):
        load(("a", make_backend("a", info=info)), backends=["a"])


def test_explicitly_named_backend_with_a_bad_record_is_an_error_not_a_warning():
    registry = load(("a", make_backend("a", profiles=[profile("a-npu", "a", sources={})])), backends=["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PluginError, match="has no source.*requested explicitly"):
            registry.device_profiles()


def test_explicitly_named_backend_with_a_raising_hook_is_an_error():
    registry = load(("a", make_backend("a", detect=raises(RuntimeError("boom")))), backends=["a"])
    with pytest.raises(PluginError, match="boom"):
        registry.detect()


def test_backends_found_rather_than_named_are_not_strict():
    registry = load(("a", make_backend("a", detect=raises(RuntimeError("boom")))), ("b", make_backend("b")))
    with pytest.warns(PluginWarning, match="boom"):
        registry.detect()


def test_backends_from_env_are_explicit(monkeypatch):
    monkeypatch.setenv(ENV_BACKENDS, "b,a")
    plugins = {"a": make_backend("a", info=None), "b": make_backend("b")}
    with pytest.raises(PluginError, match="requested explicitly"):
        Registry.load(autoload=False, plugins=plugins)
    monkeypatch.setenv(ENV_BACKENDS, "b")
    plugins = {"a": make_backend("a", info=None), "b": make_backend("b")}
    assert [b.name for b in Registry.load(autoload=False, plugins=plugins).backends] == ["b"]


# ------------------------------------------------------------------ requested_backends()


def test_requested_backends_default_is_none(monkeypatch):
    assert requested_backends() is None
    assert requested_backends(None) is None
    monkeypatch.setenv(ENV_BACKENDS, "  ")
    assert requested_backends() is None


def test_requested_backends_reads_the_env_var(monkeypatch):
    monkeypatch.setenv(ENV_BACKENDS, " cuda, cpu ,,")
    assert requested_backends() == ["cuda", "cpu"]


def test_requested_backends_cli_value_wins(monkeypatch):
    monkeypatch.setenv(ENV_BACKENDS, "cuda,cpu")
    assert requested_backends("rocm") == ["rocm"]
    assert requested_backends("cpu,gaudi") == ["cpu", "gaudi"]


def test_requested_backends_rejects_duplicates(monkeypatch):
    with pytest.raises(PluginError, match="'cpu' is named twice"):
        requested_backends("cpu,cuda,cpu")
    monkeypatch.setenv(ENV_BACKENDS, "cpu, cpu")
    with pytest.raises(PluginError, match="named twice"):
        requested_backends()


# ------------------------------------------------------------------ records


def test_lowering_pipeline_hash_is_stable_and_tracks_every_change():
    base = pipeline("a")
    assert base.hash() == pipeline("a").hash()
    assert len(base.hash()) == 16
    # the same target options in another order are the same pipeline
    assert pipeline("a", target_options={"x": "1", "y": "2"}).hash() == pipeline(
        "a", target_options={"y": "2", "x": "1"}
    ).hash()
    stages = list(base.stages)
    changed = [
        pipeline("a", stages=(stages[0], dataclasses.replace(stages[1], action="pkg.mod:pack2"))),
        pipeline("a", stages=(dataclasses.replace(stages[0], action="builtin.module(cse)"), stages[1])),
        pipeline("a", stages=(dataclasses.replace(stages[0], name="canon2"), stages[1])),
        pipeline("a", stages=tuple(reversed(stages))),
        pipeline("a", stages=stages[:1]),
        pipeline("a", target_options={"arch": "x2"}),
        pipeline("a", version="2"),
        pipeline("a", device_kind="gpu"),
        pipeline("b"),
    ]
    hashes = {base.hash(), *(p.hash() for p in changed)}
    assert len(hashes) == 1 + len(changed)


def test_lowering_pipeline_hash_is_the_same_in_another_process():
    import subprocess
    import sys

    code = (
        "from hetagent.backend import LoweringPipeline, Stage; "
        "print(LoweringPipeline('a', 'accelerator', (Stage('canon', 'mlir', 'builtin.module(canonicalize)'), "
        "Stage('pack', 'python', 'pkg.mod:pack')), {'arch': 'x1'}).hash())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == pipeline("a").hash()


def test_records_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile("a-npu", "a").memory_gb = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipeline("a").version = "2"  # type: ignore[misc]


def test_profile_source_of_falls_back_to_the_whole_field():
    p = profile("a-npu", "a", sources={**profile("a-npu", "a").sources, "peak_tflops.bf16": "datasheet p. 3"})
    assert p.source_of("peak_tflops.bf16") == "datasheet p. 3"
    assert p.source_of("peak_tflops.fp8") == SRC
    assert p.source_of("notes") is None


# ---------------------------------------------------------------- the Backend base class (plugin API 2.0)


def test_a_backend_subclass_overrides_only_what_differs():
    from hetagent.backend import Backend

    class Acme(Backend):
        name, vendor, plugin_api = "acme", "acme", PLUGIN_API_VERSION

        def profiles(self):
            return [profile("acme-npu", "acme")]

    registry = load(("acme", Acme))  # a class is registered as an instance
    assert registry.backend("acme").ok and isinstance(registry.backend("acme").module, Acme)
    assert [p.name for p in registry.device_profiles()] == ["acme-npu"]
    assert registry.executors() == [] and registry.lowering_pipelines() == [] and registry.cost_models() == []
    (detection,) = registry.detect()
    assert not detection.available and detection.reason  # the default: detects nothing, says so
    assert registry.calibrate("acme", "acme-npu") is None


def test_the_host_device_comes_from_the_backend_that_declares_it():
    from hetagent.backend import Backend

    class Host(Backend):
        name, vendor, plugin_api, host_device = "hostly", "acme", PLUGIN_API_VERSION, "hostly-cpu"

        def profiles(self):
            return [profile("hostly-cpu", "hostly", kind="cpu")]

    registry = load(("a", make_backend("a")), ("hostly", Host))
    assert (registry.host.backend, registry.host.device) == ("hostly", "hostly-cpu")
    with pytest.raises(PluginError, match="no loaded backend provides the host device"):
        load(("a", make_backend("a"))).host


def test_calibrate_hook_gets_its_arguments_and_its_record_is_checked():
    from hetagent.backend import Backend, CalibrationRun, Measurement
    from hetagent.models.kernels import Kernel

    seen = {}

    class Timer(Backend):
        name, vendor, plugin_api = "timer", "acme", PLUGIN_API_VERSION

        def calibrate(self, device, quick, progress):
            seen.update(device=device, quick=quick)
            kernel = Kernel("qkv_proj", "matmul", 2e9, 1e6)
            seconds = 0.01 if device == "good" else -1.0
            return CalibrationRun("timer", device, "cpu", "fp32", (Measurement(kernel, "fp32", seconds),), (), "test")

    registry = load(("timer", Timer))
    run = registry.calibrate("timer", "good", quick=True)
    assert seen == {"device": "good", "quick": True} and run.measurements[0].seconds == 0.01
    with pytest.raises(Exception, match="every measured time must be > 0"):
        registry.calibrate("timer", "bad")
