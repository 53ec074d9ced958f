"""TCO arithmetic beyond the device-hour (`PriceBook.usd_per_hour`): what a token and a request cost.

$ per million tokens = fleet $/hour ÷ SLA-feasible tokens per hour (DESIGN §5); $ per request likewise with
requests. A fleet's $/hour is the sum over its devices of their TCO per device-hour.
"""

from __future__ import annotations

from hetagent.errors import HetagentError

SECONDS_PER_HOUR = 3600.0


def usd_per_million_tokens(fleet_usd_per_hour: float, tokens_per_s: float) -> float:
    """What a million tokens cost on a fleet costing `fleet_usd_per_hour` that serves `tokens_per_s`."""
    if tokens_per_s <= 0:
        raise HetagentError(f"tokens per second = {tokens_per_s!r} must be > 0 to price a token")
    return fleet_usd_per_hour / (tokens_per_s * SECONDS_PER_HOUR) * 1e6


def usd_per_request(fleet_usd_per_hour: float, requests_per_s: float) -> float:
    """What one request costs on a fleet costing `fleet_usd_per_hour` that serves `requests_per_s`."""
    if requests_per_s <= 0:
        raise HetagentError(f"requests per second = {requests_per_s!r} must be > 0 to price a request")
    return fleet_usd_per_hour / (requests_per_s * SECONDS_PER_HOUR)
