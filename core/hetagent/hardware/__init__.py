"""Hardware facts (device profiles) and money (price books). No vendor SDK is imported here."""

from hetagent.hardware.device import DTYPES, DEVICE_KINDS, DeviceProfile, EfficiencyCurve, Link
from hetagent.hardware.pricebook import DevicePrice, PriceBook, default_pricebook, load_pricebook

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
]
