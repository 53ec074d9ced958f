"""The roofline cost model: curves, fitting, extrapolation, TP and transfers, memory fit, calibration, CLI."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from conftest import ROOT
from hetagent.cost import Calibration, RooflineModel, estimate_llm, memory_use, require_some_fit
from hetagent.cost.curves import combine, interpolate
from hetagent.cost.fit import Measurement, fit_calibration
from hetagent.cost.reference import reference_calibrations
from hetagent.errors import HetagentError
from hetagent.hardware.device import EfficiencyCurve
from hetagent.models import card
from hetagent.models.kernels import Kernel, matmul
from hetagent.backend import CostTable
from hetagent.backend.registry import Registry

VIDUR = ROOT.parent / "shared" / "data" / "vidur"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HETAGENT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def profiles():
    return Registry.load(["cpu", "cuda", "rocm", "gaudi"]).device_profiles()


@pytest.fixture(scope="module")
def model(profiles):
    """Kernel curves only: these tests are about the curves, not the serving efficiency on top (test_serving.py)."""
    return RooflineModel(profiles, calibrations=reference_calibrations(), serving=())


def big_gemm(b=2):
    return matmul("gemm", 8192, 8192, 8192, b, 1)


def test_interpolation_is_linear_in_log_size_and_clamped():
    curve = EfficiencyCurve("gemm", "fp16", ((1e6, 0.2), (1e8, 0.6)), "test")
    assert interpolate(curve, 1e7) == pytest.approx(0.4)
    assert interpolate(curve, 1.0) == 0.2 and interpolate(curve, 1e12) == 0.6


def test_calibration_json_round_trip(tmp_path):
    calibration = reference_calibrations()[0]
    calibration.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == calibration


def test_fit_recovers_a_known_roofline():
    peak, bandwidth, fixed = 100.0, 1000.0, 5e-6  # TFLOPS, GB/s, s
    measurements = []
    for m in (1, 2, 8, 64, 256, 1024, 4096):
        for k in (1024, 4096):
            kernel = matmul("mm", m, k, k, 2, 1)
            # the model being fitted: the GEMM's two terms combine smoothly near the ridge (curves.combine)
            seconds = fixed + combine("matmul", kernel.flops / (0.7 * peak * 1e12), kernel.bytes / (0.8 * bandwidth * 1e9))
            measurements.append(Measurement(kernel, "fp16", seconds))
    for n in (1e5, 1e6, 1e7, 1e8):
        measurements.append(Measurement(Kernel("add", "add", 0, n), "fp16", fixed + n / (0.5 * bandwidth * 1e9)))
    calibration = fit_calibration("toy", "gpu", measurements, peak_tflops={"fp16": peak}, memory_bandwidth_gbs=bandwidth,
                                  link_gbs=None, source="synthetic")
    toy = RooflineModel([_toy_profile(peak, bandwidth)], calibrations=[calibration])
    for m in measurements:
        assert toy.kernel_time("toy", m.kernel, "fp16").seconds == pytest.approx(m.seconds, rel=0.05)


def test_fit_finds_the_per_row_term_of_row_wise_kernels():
    """A norm of few wide rows is one block's serial stream per row: time follows the row width, not the
    bytes, until enough rows fill the device (kernels.Kernel.rows). Fitted on two widths, the model predicts a
    third it never saw."""
    bandwidth, fixed, row_gbs = 1000.0, 2e-6, 8.0

    def measure(width):
        for rows in (1, 4, 16, 64, 256, 1024, 4096, 16384):
            kernel = Kernel("norm", "norm", 0.0, 2 * rows * width * 2, rows=rows)
            stream = kernel.bytes / (0.6 * bandwidth * 1e9)
            yield Measurement(kernel, "fp16", fixed + max(stream, 2 * width * 2 / (row_gbs * 1e9)))

    calibration = fit_calibration("toy", "gpu", [*measure(2048), *measure(8192)], peak_tflops={"fp16": 100.0},
                                  memory_bandwidth_gbs=bandwidth, link_gbs=None, source="synthetic")
    assert "norm" in calibration.row_gbs
    toy = RooflineModel([_toy_profile(100.0, bandwidth)], calibrations=[calibration])
    for m in measure(4096):
        assert toy.kernel_time("toy", m.kernel, "fp16").seconds == pytest.approx(m.seconds, rel=0.1)
    # the same bytes in one row take longer than spread over many: the row term, not the bytes, binds
    one_row = toy.kernel_time("toy", Kernel("norm", "norm", 0.0, 2 * 8192 * 2, rows=1), "fp16").seconds
    spread = toy.kernel_time("toy", Kernel("norm", "norm", 0.0, 2 * 8192 * 2, rows=16), "fp16").seconds
    assert one_row > 1.5 * spread
    # a kernel that is not row-wise (rows = 0) has no row term
    assert toy.kernel_time("toy", Kernel("norm", "norm", 0.0, 2 * 8192 * 2), "fp16").seconds == pytest.approx(spread)


def test_a_pass_that_stays_in_the_cache_is_timed_with_the_cache_curves(tmp_path):
    """GEMVs timed cold (streaming from memory) and warm (`Kernel.cached`: in the last-level cache) fit two curves;
    a decode step whose kernels move no more than half the cache is timed with the warm one, a larger one with the
    cold one, and the calibration keeps both through its JSON form."""
    from hetagent.cost.phases import RESIDENT_SHARE, phase_time

    peak, memory, cache, fixed = 1.0, 30.0, 120.0, 3e-6
    measurements = []
    for k in (512, 1024, 2048, 4096):
        for n in (k, 3 * k):
            cold = matmul("proj", 1, k, n, 4, 1)
            measurements.append(Measurement(cold, "fp32", fixed + cold.bytes / (0.9 * memory * 1e9)))
            measurements.append(Measurement(dataclasses.replace(cold, cached=True), "fp32",
                                            fixed + cold.bytes / (0.8 * cache * 1e9)))
    for m in (256, 1024, 4096):  # prefill GEMMs, compute-bound
        gemm = matmul("mm", m, 2048, 2048, 4, 1)
        measurements.append(Measurement(gemm, "fp32", fixed + gemm.flops / (0.7 * peak * 1e12)))
    calibration = fit_calibration("toy", "cpu", measurements, peak_tflops={"fp32": peak}, memory_bandwidth_gbs=memory,
                                  link_gbs=None, source="synthetic", cache_bytes=64e6)
    assert calibration.cache_bytes == 64e6 and calibration.cache_gbs == pytest.approx(0.8 * cache, rel=0.01)
    assert calibration.curve("gemv@cache") is not None and calibration.memory_bandwidth_gbs == memory
    calibration.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == calibration
    profile = dataclasses.replace(_toy_profile(peak, memory), kind="cpu", peak_tflops={"fp32": peak})
    stranger = dataclasses.replace(profile, name="stranger")
    toy = RooflineModel([profile, stranger], calibrations=[calibration])
    assert toy.cache_bytes("toy") == 64e6
    for m in measurements:  # each regime predicts its own measurements
        assert toy.kernel_time("toy", m.kernel, "fp32").seconds == pytest.approx(m.seconds, rel=0.1)
    small = [matmul("proj", 1, 1024, 1024, 4, 4)]  # 16 MB: within half the cache
    large = [matmul("proj", 1, 4096, 4096, 4, 4)]  # 268 MB: streams from memory every step
    assert sum(k.total_bytes for k in small) <= RESIDENT_SHARE * 64e6 < sum(k.total_bytes for k in large)
    warm = toy.kernel_time("toy", dataclasses.replace(small[0], cached=True), "fp32").seconds * 4
    assert phase_time(toy, "toy", small, "fp32", 1).seconds == pytest.approx(warm)
    assert phase_time(toy, "toy", large, "fp32", 1).seconds == pytest.approx(
        toy.kernel_time("toy", large[0], "fp32").seconds * 4)
    # a device that only borrows the curves (extrapolated) has no cache of its measuring: it streams every pass
    assert toy.cache_bytes("stranger") == 0.0
    assert phase_time(toy, "stranger", small, "fp32", 1).seconds == pytest.approx(
        toy.kernel_time("stranger", small[0], "fp32").seconds * 4)
    assert toy.kernel_time("stranger", dataclasses.replace(small[0], cached=True), "fp32").seconds == \
        pytest.approx(toy.kernel_time("stranger", small[0], "fp32").seconds)


def _toy_profile(peak, bandwidth):
    from hetagent.hardware.device import DeviceProfile

    return DeviceProfile(name="toy", display_name="toy", vendor="test", kind="gpu", backend="test",
                         peak_tflops={"fp16": peak}, memory_gb=10, memory_bandwidth_gbs=bandwidth, tdp_w=100,
                         sources={"peak_tflops": "t", "memory_gb": "t", "memory_bandwidth_gbs": "t", "tdp_w": "t"})


def test_large_gemm_is_compute_bound_and_decode_gemv_memory_bound(model):
    gemm = model.kernel_time("h100-sxm", big_gemm(), "fp16")
    assert gemm.bound == "compute" and gemm.basis == "measured"
    assert 0.5 < 2 * 8192**3 / gemm.seconds / 989e12 < 0.9  # a realistic fraction of the dense peak
    gemv = model.kernel_time("h100-sxm", matmul("gemv", 1, 8192, 28672, 2, 1), "fp16")
    assert gemv.bound == "memory" and gemv.memory_s > gemv.compute_s


def test_dtype_rates_and_fallbacks(model):
    fp16 = model.kernel_time("h100-sxm", big_gemm(2), "fp16").compute_s
    assert model.kernel_time("h100-sxm", big_gemm(1), "fp8").compute_s == pytest.approx(fp16 / 2, rel=0.05)
    # A100 has no FP8 rate: FP8 weights are upcast, so compute runs at the FP16 rate
    a100_fp16 = model.kernel_time("a100-80gb-sxm", big_gemm(2), "fp16").compute_s
    assert model.kernel_time("a100-80gb-sxm", big_gemm(1), "fp8").compute_s == pytest.approx(a100_fp16)
    # Gaudi 3 publishes no FP16 matrix rate: FP16 runs at its BF16 rate
    assert model.kernel_time("gaudi3-pcie", big_gemm(), "fp16").seconds > 0
    with pytest.raises(HetagentError, match="no compute rate for dtype 'fp64'"):
        model.kernel_time("gaudi3-pcie", big_gemm(8), "fp64")


def test_unmeasured_devices_extrapolate_from_the_nearest_reference(model):
    assert model.basis("b200") == "extrapolated from h100-sxm"
    assert model.basis("a40") == "extrapolated from a100-80gb-sxm"
    # a kernel far into the saturated part of the curve runs in proportion to the peak
    huge = matmul("gemm", 32768, 16384, 16384, 2, 1)
    h100 = model.kernel_time("h100-sxm", huge, "fp16").seconds
    assert model.kernel_time("b200", huge, "fp16").seconds == pytest.approx(h100 * 989 / 2250, rel=0.02)


def test_a_gpu_never_borrows_a_cpu_calibrations_class_before_its_own_familys_fallback(profiles):
    """Vidur's GPU references have no attention curve: a GPU's attention uses their GEMM curve even when this
    host's CPU calibration measured attention (it used to borrow the CPU's, and GPU estimates then depended on
    whether the host had been calibrated)."""
    cpu = Calibration("host-cpu", "cpu", {"fp32": 1.0}, 50.0, None, {"gemv": 1e-6}, (
        EfficiencyCurve("attention", "fp32", ((1e3, 0.001), (1e12, 0.001)), "test"),
        EfficiencyCurve("gemv", "fp32", ((1e3, 0.5), (1e12, 0.5)), "test"),
    ), "test")
    from hetagent.models.kernels import prefill_kernels

    attention = next(k for k in prefill_kernels(card("llama-3-70b"), 5000, dtype="fp8", tp=2) if k.kind == "attention")
    plain = RooflineModel(profiles, calibrations=reference_calibrations(), serving=())
    with_cpu = RooflineModel(profiles, calibrations=[*reference_calibrations(), cpu], serving=())
    assert with_cpu.kernel_time("h100-sxm", attention, "fp8", 2) == plain.kernel_time("h100-sxm", attention, "fp8", 2)
    assert plain.kernel_time("h100-sxm", attention, "fp8", 2).seconds < 1e-3  # GEMM-class efficiency, not 0.1 %


def test_fp4_models_keep_an_fp8_kv_cache():
    llama = card("llama-3-70b")
    assert llama.kv_bytes_per_token("fp4") == llama.kv_bytes_per_token("fp8") == llama.kv_bytes_per_token("fp16") / 2


def test_tensor_parallel_all_reduce_and_kv_transfer_links(model):
    message = Kernel("allreduce", "allreduce", 0.0, 64e6)
    assert model.kernel_time("h100-sxm", message, "fp16", tp=1).seconds == 0
    nvlink = model.kernel_time("h100-sxm", message, "fp16", tp=8)
    assert nvlink.bound == "link" and "NVLink" in nvlink.basis
    same = model.transfer_time("h100-sxm", "h100-sxm", 1e9)
    cross = model.transfer_time("h100-sxm", "mi300x", 1e9)  # no common scale-up fabric: the 50 GB/s NICs
    assert "NVLink" in same.basis and "NIC" in cross.basis
    assert cross.seconds > 5 * same.seconds
    assert cross.seconds == pytest.approx(1e9 / (50e9 * 0.79), rel=0.1)


def test_a_backends_measured_table_wins(profiles):
    table = CostTable("cuda", "h100-sxm", "gemm", "fp16", ((1e12, 2e-3), (2e12, 4e-3)), "test bench")
    tabled = RooflineModel(profiles, tables=[table], calibrations=reference_calibrations(), serving=())
    timed = tabled.kernel_time("h100-sxm", big_gemm(), "fp16")
    assert timed.basis == "table from backend cuda"
    assert timed.seconds == pytest.approx(2e-3 * 2 * 8192**3 / 1e12)  # below the table: its first point's time


def test_memory_fit_and_the_model_that_fits_nowhere(model):
    h100 = model.profile("h100-sxm")
    assert not memory_use(card("llama-3-70b"), h100.memory_gb, "bf16", 1, 1, 1024, 1024).fits
    assert memory_use(card("llama-3-70b"), h100.memory_gb, "bf16", 4, 8, 4608, 512).fits
    with pytest.raises(HetagentError, match=r"needs 811.7 GB of weights, .* per device at tp 8.*43.2 GB usable"):
        require_some_fit(card("llama-3.1-405b"), model, "a40", "bf16")


def test_llm_estimate(model):
    result = estimate_llm(model, card("llama-3-8b"), "h100-sxm", dtype="bf16", tp=1, batch=8, input_tokens=512,
                          output_tokens=256)
    assert result.ttft_s == result.prefill.seconds and result.prefill.bound == "compute"
    assert 0.003 < result.tbt_s < 0.02 and result.decode_step.bound == "memory"
    assert result.memory.fits and result.request_s == pytest.approx(result.ttft_s + 255 * result.tbt_s)
    eight = estimate_llm(model, card("llama-3-70b"), "h100-sxm", dtype="bf16", tp=8, batch=1, input_tokens=512,
                         output_tokens=16)
    assert eight.decode_step.by_bound["link"] > 0  # all-reduces over NVLink
    with pytest.raises(HetagentError, match="must divide the 64 attention heads"):
        estimate_llm(model, card("llama-3-70b"), "h100-sxm", dtype="bf16", tp=3, batch=1, input_tokens=1, output_tokens=1)


@pytest.mark.skipif(not VIDUR.is_dir(), reason="Vidur measurements not present (../shared/data/vidur)")
def test_shipped_curves_meet_the_accuracy_target_on_vidur_rows(model):
    import numpy as np

    from hetagent.cost.vidur import DTYPE, load_operator_rows

    rows = load_operator_rows(VIDUR)
    predicted = np.array([model.kernel_time(r.device, r.measurement.kernel, DTYPE).seconds for r in rows])
    measured = np.array([r.measurement.seconds for r in rows])
    errors = np.abs(predicted - measured) / measured
    assert np.median(errors) <= 0.10 and np.percentile(errors, 90) <= 0.25


def test_calibrate_cpu_stores_curves_per_host_and_estimates_use_them(cli, tmp_path):
    code, out, err = cli("calibrate", "--backend", "cpu", "--quick", "--json")
    assert code == 0, err
    report = json.loads(out)
    path = Path(report["path"])
    assert path.is_file() and path.is_relative_to(tmp_path / "cache")
    assert {c["op_class"] for c in report["calibration"]["curves"]} >= {"gemm", "gemv", "norm", "add", "gemv@cache"}
    assert all(c["measured_s"] > 0 for c in report["checks"])
    # the last-level cache as the OS reports it, and the rate GEMVs reached in it (above the one from memory)
    assert report["calibration"]["cache_bytes"] > 0
    assert report["calibration"]["cache_gbs"] > 0
    code, out, err = cli("--backends", "cpu", "estimate", "gemm", "--device", "host-cpu", "--m", "256", "--k", "256",
                         "--n", "256", "--dtype", "fp32", "--json")
    assert code == 0, err
    assert json.loads(out)["basis"] == "calibrated on this host"


def test_estimate_gemm_json(cli):
    code, out, err = cli("estimate", "gemm", "--device", "h100-sxm", "--m", "4096", "--k", "4096", "--n", "28672",
                         "--dtype", "fp16", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["bound"] == "compute" and 0.0008 < data["latency_s"] < 0.003
    code, out, _ = cli("estimate", "gemm", "--device", "h100-sxm", "--m", "16", "--k", "8192", "--n", "8192",
                       "--dtype", "fp16", "--tp", "2", "--json")
    assert code == 0 and json.loads(out)["allreduce_s"] > 0
    code, out, _ = cli("estimate", "gemm", "--device", "mi300x", "--m", "512", "--k", "512", "--n", "512")
    assert code == 0 and "latency ms" in out and "extrapolated" in out


def test_estimate_llm_table_and_json(cli):
    args = ("estimate", "llm", "--model", "llama-3-70b", "--device", "h100-sxm", "--dtype", "fp8", "--tp", "4",
            "--batch", "16", "--input-tokens", "4096", "--output-tokens", "512")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["fits"] and data["ttft_s"] > 0 and data["tbt_s"] > 0 and data["decode_bound"] == "memory"
    assert math.isclose(data["memory"]["capacity_gb"], 80)
    code, out, _ = cli(*args)
    assert code == 0 and "time between tokens" in out and "fits" in out
    code, out, _ = cli("estimate", "llm", "--model", "llama-3-70b", "--device", "h100-sxm", "--dtype", "bf16",
                       "--tp", "1", "--input-tokens", "128", "--output-tokens", "16", "--json")
    assert code == 0 and not json.loads(out)["fits"] and json.loads(out)["hint"] == "fits from tp 2"


@pytest.mark.parametrize(
    "args, message",
    [
        (("gemm", "--device", "h100", "--m", "1", "--k", "1", "--n", "1"), "unknown device 'h100'; did you mean 'h100-sxm'"),
        (("gemm", "--device", "h100-sxm", "--m", "0", "--k", "1", "--n", "1"), "--m = 0 must be a positive integer"),
        (("gemm", "--device", "h100-sxm", "--m", "-5", "--k", "1", "--n", "1"), "--m = -5 must be a positive integer"),
        (("gemm", "--device", "h100-sxm", "--m", "1", "--k", "1", "--n", "1", "--dtype", "fp12"), "--dtype 'fp12' is not a dtype"),
        (("llm", "--model", "llama3-8b", "--device", "h100-sxm", "--input-tokens", "1", "--output-tokens", "1"),
         "unknown model 'llama3-8b'; did you mean 'llama-3-8b'"),
        (("llm", "--model", "llama-3.1-405b", "--device", "a40", "--input-tokens", "1", "--output-tokens", "1"),
         "does not fit on a40 at any TP degree up to 8: it needs 811.7 GB"),
        (("llm", "--model", "llama-3-8b", "--device", "h100-sxm", "--input-tokens", "0", "--output-tokens", "1"),
         "--input-tokens = 0 must be a positive integer"),
        (("llm", "--model", "llama-3-8b", "--device", "h100-sxm", "--batch", "-1", "--input-tokens", "8",
          "--output-tokens", "1"), "--batch = -1 must be a positive integer"),
    ],
)
def test_bad_estimates_exit_2_with_a_clear_message(cli, args, message):
    code, out, err = cli("estimate", *args)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err


def test_calibrate_an_unknown_backend_or_one_without_a_device_here(cli):
    code, _, err = cli("calibrate", "--backend", "tpu")
    assert code == 2 and "'tpu' is not installed" in err
    code, _, err = cli("calibrate", "--backend", "cuda")
    assert code == 2 and "no device of it to calibrate on this node" in err and "Traceback" not in err


def test_gemms_cross_the_ridge_smoothly_other_kernels_keep_max():
    from hetagent.cost.curves import TRANSITION_P

    assert combine("matmul", 1.0, 1.0) == pytest.approx(2 ** (1 / TRANSITION_P))  # at the ridge, both terms cost
    assert combine("matmul", 1.0, 0.01) == pytest.approx(1.0, rel=1e-3)  # far from it, the roofline
    assert combine("matvec", 1.0, 1.0) == combine("norm", 0.0, 1.0) == 1.0


def test_a_calibration_run_with_cached_kernels_must_say_how_large_the_cache_is():
    from hetagent.backend import CalibrationRun
    from hetagent.errors import RecordError

    gemv = matmul("proj", 1, 1024, 1024, 4, 1)
    run = CalibrationRun("cpu", "host-cpu", "cpu", "fp32", (Measurement(gemv, "fp32", 1e-4),
                                                            Measurement(dataclasses.replace(gemv, cached=True), "fp32", 4e-5)),
                         (), "test")
    with pytest.raises(RecordError, match="need the cache's size"):
        run.validate()
    dataclasses.replace(run, cache_bytes=32e6).validate()
