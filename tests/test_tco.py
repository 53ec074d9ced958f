"""TCO: $/M tokens and $/request by hand, and the paper's study end to end (table, chart, speed, bad input)."""

import dataclasses
import json

import pytest

from conftest import EXAMPLES
from hetagent.errors import HetagentError
from hetagent.hardware import default_pricebook
from hetagent.hardware.tco import usd_per_million_tokens, usd_per_request

PAPER = EXAMPLES / "studies" / "paper.toml"
CRF_8_PERCENT_4_YEARS = 0.08 * 1.08**4 / (1.08**4 - 1)  # 0.3019208


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HETAGENT_CACHE_DIR", str(tmp_path / "cache"))


def test_crf_and_device_hour_by_hand():
    book = default_pricebook()
    assert book.capital_recovery_factor() == pytest.approx(0.3019208, rel=1e-6) == CRF_8_PERCENT_4_YEARS
    # B200: 40,000 $ over 4 years at 8 % = 1.3787 $/h of capital, + the paper's 0.83 $/h operating cost
    assert book.usd_per_hour("b200", tdp_w=1000) == pytest.approx(40000 * CRF_8_PERCENT_4_YEARS / 8760 + 0.83)


def test_dollars_per_million_tokens_and_per_request_by_hand():
    # a fleet of 4 H100 (4 × 1.461646 $/h = 5.846585 $/h) serving 10,000 tokens/s = 36 M tokens/h -> 0.1624 $/M tokens
    fleet = 4 * (25000 * CRF_8_PERCENT_4_YEARS / 8760 + 0.60)
    assert fleet == pytest.approx(5.846585, rel=1e-6)
    assert usd_per_million_tokens(fleet, 10_000) == pytest.approx(fleet / 36, rel=1e-12)
    assert usd_per_million_tokens(3.6, 1000) == pytest.approx(1.0)
    assert usd_per_request(3.6, 2.0) == pytest.approx(0.0005)
    with pytest.raises(HetagentError, match="must be > 0"):
        usd_per_million_tokens(1.0, 0)


def test_paper_study_prints_every_pair_and_writes_the_chart(cli, tmp_path):
    # its run time (target < 10 s) is a figure of benchmarks/accuracy.py, not a test assertion
    chart = tmp_path / "paper.png"
    code, out, err = cli("tco", str(PAPER), "--chart", str(chart), "--json")
    assert code == 0, err
    assert chart.is_file() and chart.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(out)
    results = data["results"]
    assert len(results) == 2 * 2 * 2 * 2 * 36  # models × dtypes × workloads × SLAs × (6 × 6 pairs)
    baselines = [r for r in results if (r["prefill_device"], r["decode_device"]) == ("h100-sxm", "h100-sxm")]
    assert all(r["benefit"] == pytest.approx(1.0) for r in baselines)
    book = default_pricebook()
    for r in results:
        if r["usd_per_request"] is None:
            assert r["infeasible"]
            continue
        prefill, decode = r["prefill"], r["decode"]
        assert prefill["tp"] in (1, 2, 4, 8) and decode["batch"] >= 1 and prefill["binding"] and decode["binding"]
        # $/request = each side's $/device-second × the device-seconds it spends on one request
        price = {d: book.usd_per_hour(d, 0) for d in (r["prefill_device"], r["decode_device"])}
        assert r["usd_per_request"] == pytest.approx(
            price[r["prefill_device"]] / 3600 * prefill["device_s_per_request"]
            + price[r["decode_device"]] / 3600 * decode["device_s_per_request"], rel=1e-9)
        tokens = r["workload"]["input_tokens"] + r["workload"]["output_tokens"]
        assert r["usd_per_m_tokens"] == pytest.approx(r["usd_per_request"] / tokens * 1e6, rel=1e-9)
        if r["sla"]["name"] == "interactive":
            assert prefill["latency_s"] <= 0.25 and decode["latency_s"] <= 0.02


def test_study_table_and_overrides(cli, tmp_path):
    book = tmp_path / "cloud.toml"
    book.write_text(
        'name = "cloud"\nfinancing_rate = 0.0\nyears = 1\npower_usd_per_kwh = 0.0\n'
        "[devices.h100-sxm]\ncloud_usd_per_hour = 2.0\n[devices.b200]\ncloud_usd_per_hour = 3.0\n"
    )
    code, out, err = cli("tco", str(PAPER), "--devices", "h100-sxm,b200", "--pricebook", str(book),
                         "--chart", str(tmp_path / "c.png"))
    assert code == 0, err
    assert "b200::h100-sxm" in out and "price book cloud" in out and "benefit vs h100-sxm::h100-sxm" in out
    assert "1.00×" in out and "binding constraint" in out and "a40" not in out


@pytest.mark.parametrize(
    "book, devices, message",
    [
        ('name = "x"\nyears = 4\npower_usd_per_kwh = 0.1\n', None, "field 'financing_rate' is missing"),
        ('name = "x"\nfinancing_rate = 0.1\nyears = 4\npower_usd_per_kwh = 0.1\n[devices.h100-sxm]\npurchase_usd = 1\n',
         None, "no price for device 'a100-80gb-sxm'"),
        (None, "h100-sxm,b20", "unknown device 'b20'; did you mean 'b200'"),
    ],
)
def test_bad_study_input_exits_2(cli, tmp_path, book, devices, message):
    args = ["tco", str(PAPER), "--chart", str(tmp_path / "c.png")]
    if book is not None:
        (tmp_path / "book.toml").write_text(book)
        args += ["--pricebook", str(tmp_path / "book.toml")]
    if devices:
        args += ["--devices", devices]
    code, _, err = cli(*args)
    assert code == 2 and message in " ".join(err.split()), err


def test_study_file_errors(cli, tmp_path):
    study = tmp_path / "s.toml"
    study.write_text(PAPER.read_text().replace('models = ["llama-3-8b", "llama-3-70b"]', 'models = ["llama-3-80b"]'))
    code, _, err = cli("tco", str(study), "--chart", str(tmp_path / "c.png"))
    assert code == 2 and "did you mean 'llama-3-8b'" in err
    study.write_text('name = "s"\n')
    code, _, err = cli("tco", str(study))
    assert code == 2 and "field 'devices' is missing" in err
    code, _, err = cli("tco", str(tmp_path / "nope.toml"))
    assert code == 2 and "no such study file" in err


def small_study(tmp_path):
    """The paper's study on three devices and the 8B model: every finding's devices, in a second."""
    study = tmp_path / "small.toml"
    study.write_text(PAPER.read_text()
                     .replace('models = ["llama-3-8b", "llama-3-70b"]', 'models = ["llama-3-8b"]')
                     .replace('devices = ["a40", "a100-80gb-sxm", "gaudi3-pcie", "mi300x", "h100-sxm", "b200"]',
                              'devices = ["gaudi3-pcie", "h100-sxm", "b200"]'))
    return study


def test_report_writes_markdown_charts_and_the_computed_findings(cli, tmp_path):
    out = tmp_path / "report"
    code, text, err = cli("tco", str(small_study(tmp_path)), "--report", str(out), "--json")
    assert code == 0, err
    data = json.loads(text)
    assert data["report"] == str(out / "report.md") and data["chart"] is None
    assert (out / "reasoning.png").read_bytes()[:4] == b"\x89PNG" == (out / "summarisation.png").read_bytes()[:4]
    report = (out / "report.md").read_text()
    assert "![reasoning](reasoning.png)" in report and "Price book `cloud-2026-03`" in report
    assert {f["id"] for f in data["findings"]} == {"1", "2", "3a", "3b", "4"}
    for finding in data["findings"]:
        assert finding["holds"] in (True, False) and finding["figure"] is not None
        assert ("holds" if finding["holds"] else "does not hold") in report
    saved = json.loads((out / "findings.json").read_text())
    assert set(saved) == {"paper-2025-06", "cloud-2026-03"}


def test_a_finding_flips_at_the_price_the_tool_reports(tmp_path):
    from hetagent.cost import RooflineModel
    from hetagent.planner.tco_findings import findings
    from hetagent.planner.tco_study import load_study, run_study
    from hetagent.backend.registry import Registry

    model = RooflineModel.from_registry(Registry.load(["cuda", "rocm", "gaudi"]))
    study = load_study(small_study(tmp_path))
    outcome = run_study(study, model)
    found = findings(outcome, model)
    flipping = [f for f in found if f.flip_usd_per_hour is not None]
    assert flipping
    for f in flipping:
        book = study.pricebook
        for side, expect in ((0.999, f.holds), (1.001, not f.holds)):
            price = f.price_usd_per_hour + side * (f.flip_usd_per_hour - f.price_usd_per_hour)
            # an owned device's $/h moves with its purchase price: re-price by scaling the book's entry
            entry = book.price_of(f.deciding_device)
            capex = price - (entry.operating_usd_per_hour or 0.0)
            moved = dataclasses.replace(entry, purchase_usd=capex * 8760 / book.capital_recovery_factor())
            repriced = dataclasses.replace(book, prices={**book.prices, f.deciding_device: moved})
            again = next(g for g in findings(outcome, model, repriced) if g.id == f.id)
            assert again.holds == expect, (f.id, side)


def test_shipped_books_price_the_papers_devices_with_sources():
    from hetagent.hardware.pricebook import shipped_pricebook, shipped_pricebooks

    assert shipped_pricebooks() == ["cloud-2026-03", "paper-2025-06"]
    cloud = shipped_pricebook("cloud-2026-03")
    for device in ("a40", "a100-80gb-sxm", "gaudi3-pcie", "mi300x", "h100-sxm", "b200"):
        assert cloud.price_of(device).source
    assert cloud.usd_per_hour("h100-sxm", 700) == 2.69  # a cloud price is the $/hour, nothing added
    with pytest.raises(HetagentError, match="no shipped price book 'cloud-1999'"):
        shipped_pricebook("cloud-1999")
