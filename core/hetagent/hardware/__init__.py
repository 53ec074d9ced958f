"""Hardware facts (device profiles) and money (price books, TCO per device-hour, token and request)."""

from hetagent.hardware.device import DTYPES, DEVICE_KINDS, DeviceProfile, EfficiencyCurve, Link
from hetagent.hardware.pricebook import DevicePrice, PriceBook, default_pricebook, load_pricebook
from hetagent.hardware.tco import usd_per_million_tokens, usd_per_request

__all__ = [
    "DTYPES",
    "DEVICE_KINDS",
    "DeviceProfile",
    "EfficiencyCurve",
    "Link",
    "DevicePrice",
    "PriceBook",
    "default_pricebook",
    "load_pricebook",
    "usd_per_million_tokens",
    "usd_per_request",
]
