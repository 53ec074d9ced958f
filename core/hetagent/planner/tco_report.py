"""`hetagent tco STUDY --report DIR`: the study as a Markdown report with one chart per workload and the findings.

Written into DIR: `report.md`, `<workload>.png` (in the style of the paper's Figures 8 and 9: per model and dtype
and per SLA, the TCO benefit of every prefill::decode pair over the baseline, as a prefill × decode grid) and
`findings.json`. The findings table (`tco_findings`) is computed, never written by hand; the ranking is shown
under the study's price book and re-priced under a second one (exact: the configurations do not depend on prices).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.hardware.pricebook import PriceBook
from hetagent.planner.tco_chart import save_figure
from hetagent.planner.tco_findings import Finding, findings, scenario_benefits
from hetagent.planner.tco_study import StudyResult

TOP = 3


def write_report(outcome: StudyResult, model, directory: str | Path, *, second: PriceBook | None = None) -> Path:
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HetagentError(f"cannot create the report directory {directory}: {exc}") from None
    study = outcome.study
    books = [study.pricebook] + ([second] if second is not None and second.name != study.pricebook.name else [])
    devices = sorted({*study.devices, *study.baseline})
    prices = {b.name: {d: b.usd_per_hour(d, model.profile(d).tdp_w) for d in devices} for b in books}
    charts = [_chart(outcome, workload, prices[study.pricebook.name], directory) for workload in study.workloads]
    found = {b.name: findings(outcome, model, b) for b in books}
    (directory / "findings.json").write_text(json.dumps({name: [f.to_dict() for f in fs] for name, fs in found.items()},
                                                        indent=1, default=str))
    lines = [
        f"# TCO study `{study.name}`",
        "",
        study.description,
        "",
        f"Baseline: `{'::'.join(study.baseline)}`. Benefit = baseline $/M tokens ÷ the pair's (higher is better). "
        f"Models {', '.join(study.models)}; dtypes {', '.join(study.dtypes)}; TP {list(study.tp_degrees)}; "
        f"prefill batches {list(study.prefill_batches)}; decode batches {list(study.decode_batches)}.",
        "",
        "## Findings of the paper, checked",
        "",
    ]
    for book in books:
        lines += [f"Price book `{book.name}`:", "", *_findings_table(found[book.name]), ""]
    lines += ["## Charts", ""]
    for workload, chart in zip(study.workloads, charts):
        lines += [f"### {workload.name} ({workload.input_tokens} in / {workload.output_tokens} out)", "",
                  f"![{workload.name}]({chart.name})", ""]
    lines += ["## Ranking per scenario", "", _ranking_header(books), _ranking_rule(books)]
    benefits = {b.name: scenario_benefits(outcome, prices[b.name]) for b in books}
    for key in outcome.scenarios():
        model_name, dtype, workload, sla = key
        cells = []
        for book in books:
            ranked = sorted(benefits[book.name].get(key, {}).items(), key=lambda kv: -kv[1])[:TOP]
            cells.append("<br>".join(f"`{pair}` {value:.2f}×" for pair, value in ranked) or "no feasible pair")
        lines.append(f"| {model_name} {dtype} | {workload.name} | {sla.name} | " + " | ".join(cells) + " |")
    lines += ["", "## Prices", "", "| device | " + " | ".join(f"{b.name} $/h" for b in books) + " | efficiency from |",
              "|---|" + "---|" * len(books) + "---|"]
    for device in devices:
        lines.append(f"| {device} | " + " | ".join(f"{prices[b.name][device]:.3f}" for b in books)
                     + f" | {model.basis(device)} |")
    lines += ["", "Sources of the prices:", ""]
    for book in books:
        for device in devices:
            lines.append(f"- `{book.name}` {device}: {book.price_of(device).source or book.source}")
    lines += ["", "## Why pairs are infeasible or bound", ""]
    for key in outcome.scenarios():
        model_name, dtype, workload, sla = key
        results = [r for r in outcome.results if (r.model, r.dtype, r.workload, r.sla) == key]
        infeasible = [r for r in results if not (r.prefill and r.decode)]
        if infeasible:
            lines.append(f"- {model_name} {dtype} {workload.name} {sla.name}: " + "; ".join(
                f"`{r.pair}`: {r.infeasible}" for r in infeasible[:6]) + (" …" if len(infeasible) > 6 else ""))
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _findings_table(found: list[Finding]) -> list[str]:
    rows = ["| # | the paper | paper's figure | ours | holds | rule | deciding input | today | flips at |",
            "|---|---|---|---|---|---|---|---|---|"]
    for f in found:
        ours = "-" if f.figure is None else (f"{f.figure:.0%}" if f.unit == "share" else f"{f.figure:.2f}"
                                             + ("×" if f.unit == "×" else ""))
        holds = "n/a" if f.holds is None else ("holds" if f.holds else "does not hold")
        if f.flip_usd_per_hour is None:
            flip = "no flip within 1/16×–16× of today's price" if f.holds is not None else "-"
        else:
            flip = f"${f.flip_usd_per_hour:.3f}/h"
            if f.flip_purchase_usd is not None:
                flip += f" (purchase ≈ ${f.flip_purchase_usd:,.0f})"
        today = "-" if math.isnan(f.price_usd_per_hour) else f"${f.price_usd_per_hour:.3f}/h"
        rows.append(f"| {f.id} | {f.claim} | {f.paper} | {ours} | {holds} | {f.rule} | {f.deciding_device} $/h | "
                    f"{today} | {flip} |")
    return rows


def _ranking_header(books) -> str:
    return "| model | workload | SLA | " + " | ".join(f"top {TOP} under `{b.name}`" for b in books) + " |"


def _ranking_rule(books) -> str:
    return "|---|---|---|" + "---|" * len(books)


def _chart(outcome: StudyResult, workload, prices: dict[str, float], directory: Path) -> Path:
    """One figure per workload: rows are SLAs, columns (model, dtype); each panel a prefill × decode grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    study = outcome.study
    columns = [(m, d) for m in study.models for d in study.dtypes]
    devices = list(study.devices)
    benefits = scenario_benefits(outcome, prices)
    fig, axes = plt.subplots(len(study.slas), len(columns), figsize=(3.4 * len(columns), 3.3 * len(study.slas)),
                             squeeze=False)
    top = max((v for b in benefits.values() for v in b.values()), default=1.0)
    for row, sla in enumerate(study.slas):
        for col, (model_name, dtype) in enumerate(columns):
            ax = axes[row][col]
            values = benefits.get((model_name, dtype, workload, sla), {})
            grid = np.full((len(devices), len(devices)), np.nan)
            for i, p in enumerate(devices):
                for j, d in enumerate(devices):
                    grid[i, j] = values.get(f"{p}::{d}", np.nan)
            image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=top)
            for i in range(len(devices)):
                for j in range(len(devices)):
                    text = "×" if math.isnan(grid[i, j]) else f"{grid[i, j]:.1f}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6,
                            color="white" if math.isnan(grid[i, j]) or grid[i, j] < top / 2 else "black")
            ax.set_xticks(range(len(devices)), devices, rotation=90, fontsize=6)
            ax.set_yticks(range(len(devices)), devices if col == 0 else [], fontsize=6)
            ax.set_title(f"{model_name} {dtype}, {sla.name}", fontsize=8)
            if col == 0:
                ax.set_ylabel("prefill device", fontsize=7)
            if row == len(study.slas) - 1:
                ax.set_xlabel("decode device", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label=f"TCO benefit vs {'::'.join(study.baseline)}")
    fig.suptitle(f"{study.name}: {workload.name} ({workload.input_tokens} in / {workload.output_tokens} out), "
                 f"price book {study.pricebook.name}", fontsize=10)
    path = directory / f"{workload.name}.png"
    return save_figure(fig, path)
