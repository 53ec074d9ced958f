"""Price books: what devices cost to own or rent. Prices are the user's choice, never device facts.

A book gives, per device profile name, a purchase price (owned hardware, financed) or a cloud $/hour, plus the
site's financing rate and term, power price, PUE and other opex. The paper's June-2025 book ships as the
default (`paper-2025-06`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from hetagent.errors import HetagentError
from hetagent.files import read_toml

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class DevicePrice:
    device: str  # DeviceProfile.name
    purchase_usd: float | None = None
    cloud_usd_per_hour: float | None = None
    # A CPU rented by the core (a cloud vCPU-hour): a host or partition of k cores costs k times this
    cloud_usd_per_core_hour: float | None = None
    # An operating cost stated directly by the book's source (power, cooling, ...); when absent it is derived
    # from the device's TDP, the PUE and the power price.
    operating_usd_per_hour: float | None = None
    source: str = ""


@dataclass(frozen=True)
class PriceBook:
    name: str
    financing_rate: float
    years: float
    power_usd_per_kwh: float
    pue: float = 1.0
    other_opex_usd_per_hour: float = 0.0
    prices: Mapping[str, DevicePrice] = field(default_factory=dict)
    source: str = ""
    description: str = ""

    def capital_recovery_factor(self) -> float:
        """CRF = r(1+r)^n / ((1+r)^n - 1): the yearly payment per dollar borrowed over n years at rate r."""
        r, n = self.financing_rate, self.years
        if r == 0:
            return 1.0 / n
        growth = (1.0 + r) ** n
        return r * growth / (growth - 1.0)

    def price_of(self, device: str) -> DevicePrice:
        try:
            return self.prices[device]
        except KeyError:
            known = ", ".join(sorted(self.prices)) or "none"
            raise HetagentError(
                f"price book {self.name!r} has no price for device {device!r}; it prices: {known}"
            ) from None

    def usd_per_hour(self, device: str, tdp_w: float, cores: int | None = None) -> float:
        """Total cost of ownership of one device for one hour (or its cloud price, where the book gives one); a
        CPU priced per core costs `cores` times that."""
        price = self.price_of(device)
        if price.cloud_usd_per_core_hour is not None:
            if not cores:
                raise HetagentError(f"price book {self.name!r} prices {device!r} per core: say how many cores")
            return price.cloud_usd_per_core_hour * cores
        if price.cloud_usd_per_hour is not None:
            return price.cloud_usd_per_hour
        capex = price.purchase_usd * self.capital_recovery_factor() / HOURS_PER_YEAR
        if price.operating_usd_per_hour is not None:
            operating = price.operating_usd_per_hour
        else:
            operating = tdp_w / 1000.0 * self.pue * self.power_usd_per_kwh
        return capex + operating + self.other_opex_usd_per_hour


def load_pricebook(path: str | Path) -> PriceBook:
    """Read a price book from a TOML file (format: `spec/plan-format.md`, section "price book")."""
    return _pricebook_from_dict(read_toml(path, "price book"), str(path))


def default_pricebook() -> PriceBook:
    return shipped_pricebook("paper-2025-06")


def shipped_pricebooks() -> list[str]:
    """Names of the books shipped with hetagent: the paper's (the default) and today's cloud prices."""
    folder = resources.files("hetagent.hardware").joinpath("pricebooks")
    return sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml"))


def find_pricebook(value: str | Path | None, base: Path) -> PriceBook:
    """The book a study, fleet or option names: None → the default; a shipped book's name; else a TOML path,
    relative to `base` (the naming file's folder) when it is there, else as given."""
    if value is None:
        return default_pricebook()
    if str(value) in shipped_pricebooks():
        return shipped_pricebook(str(value))
    path = Path(value)
    if not path.is_absolute() and (base / path).exists():
        path = base / path
    return load_pricebook(path)


def shipped_pricebook(name: str) -> PriceBook:
    if name not in shipped_pricebooks():
        raise HetagentError(f"no shipped price book {name!r}; shipped: {', '.join(shipped_pricebooks())} (or give a TOML path)")
    text = resources.files("hetagent.hardware").joinpath(f"pricebooks/{name}.toml").read_text()
    return _pricebook_from_dict(tomllib.loads(text), f"{name}.toml")


def _pricebook_from_dict(data: dict[str, Any], origin: str) -> PriceBook:
    top_required = {"name": str, "financing_rate": (int, float), "years": (int, float), "power_usd_per_kwh": (int, float)}
    top_optional = {"pue": (int, float), "other_opex_usd_per_hour": (int, float), "source": str, "description": str}
    for key, kind in top_required.items():
        if not isinstance(data.get(key), kind):
            raise HetagentError(f"{origin}: field {key!r} is missing or not a {_kind_name(kind)}")
    for key in data:
        if key not in top_required and key not in top_optional and key != "devices":
            valid = ", ".join([*top_required, *top_optional, "devices"])
            raise HetagentError(f"{origin}: unknown field {key!r}; valid fields: {valid}")
    for key, low, high in _RANGES:
        value = data.get(key)
        if isinstance(value, (int, float)) and not (math.isfinite(value) and low <= value <= high):
            raise HetagentError(f"{origin}: {key} = {value!r}; it must be a finite number in [{low:g}, {high:g}]")
    devices = data.get("devices") or {}
    if not isinstance(devices, dict) or not all(isinstance(entry, dict) for entry in devices.values()):
        raise HetagentError(f"{origin}: devices must be a table of tables ([devices.<id>] purchase_usd = ...)")
    prices = {}
    for device, entry in devices.items():
        fields = {"purchase_usd", "cloud_usd_per_hour", "cloud_usd_per_core_hour", "operating_usd_per_hour", "source"}
        unknown = set(entry) - fields
        if unknown:
            raise HetagentError(
                f"{origin}: devices.{device} has unknown field(s) {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(sorted(fields))}"
            )
        price = DevicePrice(device=device, **entry)
        if price.purchase_usd is None and price.cloud_usd_per_hour is None and price.cloud_usd_per_core_hour is None:
            raise HetagentError(f"{origin}: devices.{device} needs purchase_usd, cloud_usd_per_hour or "
                                "cloud_usd_per_core_hour")
        for key in fields - {"source"}:
            value = entry.get(key)
            if value is not None and (not isinstance(value, (int, float)) or not 0 <= value < math.inf):
                raise HetagentError(f"{origin}: devices.{device}.{key} = {value!r} must be a number >= 0, finite")
        prices[device] = price
    return PriceBook(
        name=data["name"],
        financing_rate=float(data["financing_rate"]),
        years=float(data["years"]),
        power_usd_per_kwh=float(data["power_usd_per_kwh"]),
        pue=float(data.get("pue", 1.0)),
        other_opex_usd_per_hour=float(data.get("other_opex_usd_per_hour", 0.0)),
        prices=prices,
        source=data.get("source", ""),
        description=data.get("description", ""),
    )


# (field, lowest, highest): a rate is a fraction (0.08 is 8 %), years > 0 (the capital recovery factor divides by
# them), PUE >= 1 by definition
_RANGES = (("financing_rate", 0.0, 1.0), ("years", 1e-3, 100.0), ("power_usd_per_kwh", 0.0, 100.0),
           ("pue", 1.0, 10.0), ("other_opex_usd_per_hour", 0.0, 1e6))


def _kind_name(kind) -> str:
    return "string" if kind is str else "number"
