"""The paper's four findings, checked against a study's results: our figure, holds or not, and what decides it.

Each side of a pair picks the (TP, batch) with the fewest device-seconds per request (`tco_study._choose`), which
does not depend on prices, so a study's results can be re-priced exactly: $/request = Σ $/h of a side's device ·
its device-seconds / 3600. That makes every finding a function of the device prices, and lets the tool find the
price of the deciding device at which the finding would flip (holds ↔ does not), by scanning multipliers of its
$/hour from 1/16× to 16× and bisecting the first change nearest to today's price.

Findings ("Efficient and Scalable Agentic AI with Heterogeneous Systems", Asgar, Nguyen, Katti 2025, and the
authors' follow-up), over every scenario of the study:
1. B200 prefill + Gaudi 3 decode is the best pair — figure: share of scenarios where it is within 5 % of the best
   pair's benefit; holds at ≥ 50 %. Decided by Gaudi 3's price.
2. H100 prefill + Gaudi 3 decode is comparable to B200::B200 — figure: median over scenarios of its benefit ÷
   B200::B200's; holds at ≥ 0.9. Decided by B200's price.
3. The best heterogeneous pair is ≈3× (prefill-heavy) and up to ≈4× (decode-heavy) better than H100::H100 —
   figure: the largest benefit of a pair of two different devices over the prefill-heavy (decode-heavy)
   scenarios; holds at ≥ 85 % of the paper's. Decided by H100's price (the baseline's).
4. B200::B200 is ≈2.5× better than H100::H100 decode-heavy — figure: its largest benefit over decode-heavy
   scenarios; holds within ±15 % of 2.5. Decided by B200's price.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable

from hetagent.hardware.pricebook import HOURS_PER_YEAR, PriceBook
from hetagent.planner.tco_study import PairResult, StudyResult

NEAR_BEST = 0.95
SCAN = tuple(2 ** (i / 4) for i in range(-16, 17))  # price multipliers 1/16 … 16
BISECTIONS = 24


@dataclass(frozen=True)
class Finding:
    id: str
    claim: str
    paper: str  # the paper's figure, in words
    figure: float | None  # ours (None: the devices it needs are not in the study, or nothing is feasible)
    unit: str  # "×", "share", "ratio"
    holds: bool | None
    rule: str  # when it holds
    deciding_device: str
    price_usd_per_hour: float  # today's $/h of the deciding device in the book
    flip_usd_per_hour: float | None  # the $/h at which the finding flips (None: not within 1/16×–16×)
    flip_purchase_usd: float | None  # the same as a purchase price, when the book prices the device as owned

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def scenario_benefits(outcome: StudyResult, usd_per_hour: dict[str, float]) -> dict[tuple, dict[str, float]]:
    """Per scenario, each feasible pair's TCO benefit over the baseline at the given $/hour per device."""
    found = {}
    baseline = "::".join(outcome.study.baseline)
    feasible: dict[tuple, list[PairResult]] = {}  # one pass: the flip search calls this for every price it tries
    for r in outcome.results:
        if r.prefill and r.decode:
            feasible.setdefault((r.model, r.dtype, r.workload, r.sla), []).append(r)
    for key in outcome.scenarios():
        costs = {r.pair: _usd_per_request(r, usd_per_hour) for r in feasible.get(key, ())}
        if baseline in costs:
            found[key] = {pair: costs[baseline] / cost for pair, cost in costs.items()}
    return found


def _usd_per_request(r: PairResult, usd_per_hour: dict[str, float]) -> float:
    return (usd_per_hour[r.prefill_device] * r.prefill.device_s_per_request
            + usd_per_hour[r.decode_device] * r.decode.device_s_per_request) / 3600


def _heavy(key, kind: str) -> bool:
    workload = key[2]
    decode_heavy = workload.output_tokens > workload.input_tokens
    return decode_heavy if kind == "decode" else not decode_heavy


@dataclass(frozen=True)
class _Rule:
    id: str
    claim: str
    paper: str
    unit: str
    rule: str
    needs: tuple[str, ...]
    deciding: str
    figure: Callable[[dict], float | None]
    holds: Callable[[float], bool]


def _rules(prefill_fast: str, decode_cheap: str, older: str, baseline: str) -> list[_Rule]:
    def best_pair_share(benefits):
        pair = f"{prefill_fast}::{decode_cheap}"
        scored = [pair in b and b[pair] >= NEAR_BEST * max(b.values()) for b in benefits.values()]
        return sum(scored) / len(scored) if scored else None

    def comparable(benefits):
        a, b = f"{older}::{decode_cheap}", f"{prefill_fast}::{prefill_fast}"
        ratios = [v[a] / v[b] for v in benefits.values() if a in v and b in v]
        return statistics.median(ratios) if ratios else None

    def best_hetero(kind):
        def figure(benefits):
            values = [value for key, b in benefits.items() if _heavy(key, kind)
                      for pair, value in b.items() if pair.split("::")[0] != pair.split("::")[1]]
            return max(values) if values else None
        return figure

    def homogeneous_decode_heavy(benefits):
        pair = f"{prefill_fast}::{prefill_fast}"
        values = [b[pair] for key, b in benefits.items() if _heavy(key, "decode") and pair in b]
        return max(values) if values else None

    return [
        _Rule("1", f"{prefill_fast} prefill + {decode_cheap} decode is the best pair", "best pair", "share",
              f"within {1 - NEAR_BEST:.0%} of the best pair in ≥ 50 % of scenarios", (prefill_fast, decode_cheap),
              decode_cheap, best_pair_share, lambda f: f >= 0.5),
        _Rule("2", f"{older} prefill + {decode_cheap} decode is comparable to {prefill_fast}::{prefill_fast}", "≈ 1×",
              "ratio", "median benefit ratio ≥ 0.9", (older, decode_cheap, prefill_fast), prefill_fast, comparable,
              lambda f: f >= 0.9),
        _Rule("3a", f"best heterogeneous pair vs {baseline}, prefill-heavy", "≈ 3×", "×", "≥ 85 % of 3× (2.55×)",
              (), older, best_hetero("prefill"), lambda f: f >= 0.85 * 3),
        _Rule("3b", f"best heterogeneous pair vs {baseline}, decode-heavy", "up to ≈ 4×", "×", "≥ 85 % of 4× (3.4×)",
              (), older, best_hetero("decode"), lambda f: f >= 0.85 * 4),
        _Rule("4", f"{prefill_fast}::{prefill_fast} vs {baseline}, decode-heavy", "≈ 2.5×", "×",
              "within ±15 % of 2.5× (2.125–2.875×)", (prefill_fast,), prefill_fast, homogeneous_decode_heavy,
              lambda f: 2.125 <= f <= 2.875),
    ]


def findings(outcome: StudyResult, model, book: PriceBook | None = None, *, fast: str = "b200",
             cheap: str = "gaudi3-pcie", older: str = "h100-sxm") -> list[Finding]:
    """The paper's findings over `outcome`, priced with `book` (default: the study's)."""
    book = book or outcome.study.pricebook
    devices = {*outcome.study.devices, *outcome.study.baseline}
    prices = {d: book.usd_per_hour(d, model.profile(d).tdp_w) for d in devices}
    baseline = "::".join(outcome.study.baseline)
    result = []
    for rule in _rules(fast, cheap, older, baseline):
        missing = [d for d in (*rule.needs, rule.deciding) if d not in devices]
        if missing:
            result.append(Finding(rule.id, rule.claim, rule.paper, None, rule.unit, None,
                                  f"{rule.rule}; not in this study: {', '.join(missing)}", rule.deciding,
                                  float("nan"), None, None))
            continue

        def figure_at(multiplier: float) -> float | None:
            return rule.figure(scenario_benefits(outcome, {**prices, rule.deciding: prices[rule.deciding] * multiplier}))

        today = figure_at(1.0)
        holds = None if today is None else rule.holds(today)
        flip = None if today is None else _flip(lambda k: (lambda f: f is not None and rule.holds(f))(figure_at(k)), holds)
        flip_usd = None if flip is None else prices[rule.deciding] * flip
        result.append(Finding(rule.id, rule.claim, rule.paper, today, rule.unit, holds, rule.rule, rule.deciding,
                              prices[rule.deciding], flip_usd, _purchase(book, rule.deciding, flip_usd, model)))
    return result


def _flip(holds_at: Callable[[float], bool], today: bool) -> float | None:
    """The price multiplier nearest to 1 at which `holds_at` changes from today's answer (None: not in SCAN)."""
    order = sorted(SCAN, key=lambda k: abs(math.log(k)))
    for k in order:
        if holds_at(k) != today:
            lo, hi = (1.0, k)
            for _ in range(BISECTIONS):  # on a log scale, between today (lo) and the first changed point (hi)
                mid = math.sqrt(lo * hi)
                lo, hi = (mid, hi) if holds_at(mid) == today else (lo, mid)
            return hi
    return None


def _purchase(book: PriceBook, device: str, usd_per_hour: float | None, model) -> float | None:
    """The purchase price giving `usd_per_hour` under the book's financing (owned devices only)."""
    if usd_per_hour is None:
        return None
    price = book.price_of(device)
    if price.cloud_usd_per_hour is not None:
        return None
    operating = price.operating_usd_per_hour
    if operating is None:
        operating = model.profile(device).tdp_w / 1000 * book.pue * book.power_usd_per_kwh
    capex_per_hour = usd_per_hour - operating - book.other_opex_usd_per_hour
    return max(capex_per_hour, 0.0) * HOURS_PER_YEAR / book.capital_recovery_factor()
