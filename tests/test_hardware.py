"""Price books and TCO arithmetic."""

import pytest

from hetagent.errors import HetagentError
from hetagent.hardware import default_pricebook, load_pricebook

PAPER_DEVICES = {"a40": 3000, "a100-80gb-sxm": 8000, "gaudi3-pcie": 12500, "mi300x": 20000, "h100-sxm": 25000, "b200": 40000}


def test_default_book_is_the_papers_june_2025_book():
    book = default_pricebook()
    assert book.name == "paper-2025-06"
    assert (book.financing_rate, book.years, book.power_usd_per_kwh) == (0.08, 4, 0.40)
    assert {d: p.purchase_usd for d, p in book.prices.items() if p.purchase_usd} == PAPER_DEVICES
    assert all(p.source for p in book.prices.values())
    # the host CPU, which the paper does not price: by the core, from a cloud list price
    assert book.price_of("host-cpu").cloud_usd_per_core_hour > 0 and book.price_of("host-cpu").purchase_usd is None


def test_capital_recovery_factor_and_hourly_cost():
    book = default_pricebook()
    # CRF(8 %, 4 y) = 0.08 * 1.08^4 / (1.08^4 - 1) = 0.301921
    assert book.capital_recovery_factor() == pytest.approx(0.3019208, rel=1e-6)
    # H100: 25,000 $ * CRF / 8760 h + the paper's 0.60 $/h operating cost
    assert book.usd_per_hour("h100-sxm", tdp_w=700) == pytest.approx(25000 * 0.3019208 / 8760 + 0.60, rel=1e-6)


def test_power_cost_is_derived_from_tdp_when_the_book_gives_no_operating_cost(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(
        'name = "site"\nfinancing_rate = 0.0\nyears = 5\npower_usd_per_kwh = 0.10\npue = 1.5\n'
        "[devices.l4]\npurchase_usd = 4380\n[devices.cloud-h100]\ncloud_usd_per_hour = 2.5\n"
    )
    book = load_pricebook(path)
    assert book.usd_per_hour("l4", tdp_w=72) == pytest.approx(4380 / 5 / 8760 + 0.072 * 1.5 * 0.10)
    assert book.usd_per_hour("cloud-h100", tdp_w=700) == 2.5


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = 'x'\nyears = 4\npower_usd_per_kwh = 0.1\n", "field 'financing_rate' is missing"),
        ("name = 'x'\nfinancing_rate = 0.1\nyears = 4\npower_usd_per_kwh = 0.1\ncolour = 'red'\n", "unknown field 'colour'"),
        ("name = 'x'\nfinancing_rate = 0.1\nyears = 4\npower_usd_per_kwh = 0.1\n[devices.a]\nsource = 's'\n", "needs purchase_usd, cloud_usd_per_hour or cloud_usd_per_core_hour"),
        ("name = 'x'\nfinancing_rate = 0.1\nyears = 4\npower_usd_per_kwh = 0.1\n[devices.a]\npurchase_usd = -1\n", "must be a number >= 0"),
        ("name = \n", "not valid TOML"),
    ],
)
def test_bad_price_books_are_explained(tmp_path, text, message):
    path = tmp_path / "book.toml"
    path.write_text(text)
    with pytest.raises(HetagentError, match=message) as info:
        load_pricebook(path)
    assert str(path) in str(info.value)


def test_unpriced_device_names_what_is_priced():
    with pytest.raises(HetagentError, match="no price for device 'h200-sxm'.*a100-80gb-sxm"):
        default_pricebook().usd_per_hour("h200-sxm", 700)


def test_steal_is_read_from_proc_stat_and_warned_of(tmp_path):
    from hetagent.hardware import machine_load

    def stat(steal, total_idle):
        path = tmp_path / f"stat{steal}"
        path.write_text(f"cpu  1000 0 100 {total_idle} 10 0 5 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
        return machine_load.cpu_ticks(str(path))

    before, after = stat(100, 10000), stat(400, 19700)
    assert before == (100, 1000 + 100 + 10000 + 10 + 5 + 100)
    assert machine_load.steal_since(before, after) == pytest.approx(300 / 10000)
    assert machine_load.cpu_ticks(str(tmp_path / "absent")) is None
    assert machine_load.steal_since(None, after) is None
    warning = machine_load.load_warning(0.0, 0.0, "the figures", steal=0.03)
    assert warning == ("the hypervisor took 3% of the CPU time (steal): other guests ran on these cores; the figures "
                       "are not representative")
    assert machine_load.load_warning(0.0, 0.0, "the figures", steal=0.01) is None
