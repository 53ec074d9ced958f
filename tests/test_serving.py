"""Vendor-true efficiency and end-to-end serving estimates: published figures, fitted serving efficiency, the
maximum-throughput search (aggregated and disaggregated) and its command line."""

import json

import pytest

from hetagent.cost import RooflineModel
from hetagent.cost import efficiency, vendor
from hetagent.cost.serving import Workload, max_throughput, max_throughput_disaggregated
from hetagent.models import card
from hetagent.models.kernels import Kernel, matmul
from hetagent.backend.registry import Registry


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HETAGENT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model():
    return RooflineModel.from_registry(Registry.load(["cpu", "cuda", "rocm", "gaudi"]))


def test_published_figures_are_sourced_and_every_device_with_figures_is_fitted():
    sources, figures = vendor.published_figures()
    assert {f.source for f in figures} == set(sources) and all(s.url.startswith("https://") for s in sources.values())
    fitted = {s.device: s for s in efficiency.shipped_serving_efficiency()}
    for device in {f.device for f in figures}:
        assert fitted[device].figures == sum(f.device == device for f in figures)
        assert fitted[device].compute in vendor.GRID and fitted[device].memory in vendor.GRID


def test_serving_efficiency_scales_compute_and_memory_terms_only(model):
    curves_only = RooflineModel(model._profiles.values(), serving=())
    mi300x, _ = model.serving_efficiency("mi300x")
    gemv = matmul("w", 1, 8192, 8192, 2, 1)
    big = matmul("w", 16384, 8192, 8192, 2, 1)
    assert model.kernel_time("mi300x", gemv, "bf16").memory_s == pytest.approx(
        curves_only.kernel_time("mi300x", gemv, "bf16").memory_s / mi300x.memory)
    assert model.kernel_time("mi300x", big, "bf16").compute_s == pytest.approx(
        curves_only.kernel_time("mi300x", big, "bf16").compute_s / mi300x.compute)
    message = Kernel("allreduce", "allreduce", 0.0, 1e6)
    assert model.kernel_time("mi300x", message, "bf16", 8).seconds == curves_only.kernel_time("mi300x", message, "bf16", 8).seconds
    # CPUs get no serving efficiency; a device without published figures borrows the nearest fitted one's
    assert model.serving_efficiency("xeon-6980p") == (None, "")
    borrowed, how = model.serving_efficiency("gaudi3-pcie")
    assert borrowed.device == "gaudi3-oam" and "borrowed from gaudi3-oam" in how


def test_devices_json_says_where_every_accelerator_gets_its_efficiency(cli):
    code, out, err = cli("devices", "--json")
    assert code == 0, err
    for device in json.loads(out):
        source = device["efficiency"]
        assert source["curves"]
        if device["kind"] == "cpu":
            continue
        own_curves = source["curves_borrowed_from"] is None
        serving = source["serving_efficiency"]
        assert own_curves or serving["borrowed_from"] is None or serving["borrowed_from"], device["name"]
        assert serving is not None and serving["sources"], device["name"]
    by_name = {d["name"]: d["efficiency"] for d in json.loads(out)}
    assert by_name["b200"]["curves_borrowed_from"] == "h100-sxm" and by_name["h100-sxm"]["curves_borrowed_from"] is None
    assert by_name["mi300x"]["serving_efficiency"]["borrowed_from"] is None


def test_prediction_of_a_published_figure(model):
    figure = next(f for f in vendor.published_figures()[1]
                  if (f.device, f.model, f.input_tokens, f.output_tokens) == ("h100-sxm", "llama-3-8b", 1000, 1000))
    assert vendor.predict(model, figure) == pytest.approx(figure.output_tokens_per_s, rel=0.15)


def test_max_throughput_searches_tp_and_batch_within_the_limits(model):
    spec = card("llama-3-8b")
    free = max_throughput(model, spec, "h100-sxm", dtype="fp8", workload=Workload(128, 2048))
    assert free.output_tokens_per_s_per_device == pytest.approx(free.output_tokens_per_s / free.tp)
    assert free.binding in ("memory", "throughput saturates", "largest batch searched")
    assert free.memory_gb <= 0.9 * 80
    tight = max_throughput(model, spec, "h100-sxm", dtype="fp8", workload=Workload(128, 2048, ttft_s=0.2, tbt_s=0.015))
    assert tight.tbt_s <= 0.015 and tight.ttft_s <= 0.2
    assert tight.output_tokens_per_s_per_device <= free.output_tokens_per_s_per_device
    assert "TBT" in tight.binding or "TTFT" in tight.binding or tight.binding == "memory"


def test_disaggregated_balances_prefill_and_decode_devices(model):
    spec = card("llama-3-70b")
    work = Workload(512, 4096, ttft_s=0.25, tbt_s=0.02)
    point = max_throughput_disaggregated(model, spec, "b200", "gaudi3-pcie", dtype="fp8", workload=work)
    assert point.device == "b200::gaudi3-pcie" and point.ttft_s <= 0.25 and point.tbt_s <= 0.02
    assert point.prefill_tp in (1, 2, 4, 8) and point.prefill_devices_per_decode_device > 0
    devices = point.tp * (1 + point.prefill_devices_per_decode_device)
    assert point.output_tokens_per_s == pytest.approx(point.output_tokens_per_s_per_device * devices)


def test_estimate_llm_max_throughput_cli(cli):
    code, out, err = cli("estimate", "llm", "--model", "llama-3-8b", "--device", "h100-sxm", "--dtype", "fp8",
                         "--input-tokens", "512", "--output-tokens", "512", "--max-throughput", "--tbt-ms", "30", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {"tp", "batch", "output_tokens_per_s", "output_tokens_per_s_per_device", "binding"} <= set(data)
    assert data["tbt_s"] <= 0.03 and "serving efficiency" in data["efficiency_basis"]
    code, out, err = cli("estimate", "llm", "--model", "llama-3-8b", "--disaggregated", "h100-sxm::gaudi3-pcie",
                         "--input-tokens", "512", "--output-tokens", "512", "--max-throughput")
    assert code == 0, err
    assert "prefill devices per decode device" in out


@pytest.mark.parametrize("extra, message", [
    (["--device", "h100-sxm", "--ttft-ms", "200"], "--ttft-ms needs --max-throughput"),
    (["--max-throughput", "--disaggregated", "h100-sxm"], "must read PREFILL::DECODE"),
    (["--max-throughput", "--disaggregated", "h100-sxm::gaudi9"], "unknown device 'gaudi9'"),
    (["--max-throughput", "--device", "h100-sxm", "--tbt-ms", "-1"], "must be a positive number"),
    (["--max-throughput", "--device", "h100-sxm", "--tbt-ms", "0.001"], "no configuration meets the limits"),
])
def test_max_throughput_bad_input_exits_2(cli, extra, message):
    code, _, err = cli("estimate", "llm", "--model", "llama-3-8b", "--input-tokens", "512", "--output-tokens", "512", *extra)
    assert code == 2 and message in " ".join(err.split()), err


def test_mlperf_figures_are_sourced_known_devices_and_never_fitted():
    """MLPerf results are the independent check (issue 15): each names its source and a known device, splits into
    whole replicas, and the fit never sees them."""
    sources, figures, inputs = vendor.mlperf_figures()
    assert figures and inputs and all(i > 0 for i in inputs)
    assert {f.source for f in figures} == set(sources) and all(s.url.startswith("https://") for s in sources.values())
    devices = {p.name for p in Registry.load(["cuda", "rocm", "gaudi"]).device_profiles()}
    for f in figures:
        assert f.device in devices and f.devices % f.tp == 0 and f.output_tokens > 0
        one = f.replica(inputs[0])
        assert one.tp == f.tp and one.output_tokens_per_s * f.devices / f.tp == pytest.approx(f.output_tokens_per_s)
    fitted_on = set(vendor.published_figures()[1])
    assert not fitted_on & {f.replica(i) for f in figures for i in inputs}
    assert not {s for e in efficiency.shipped_serving_efficiency() for s in e.sources} & set(sources)
