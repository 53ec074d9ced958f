"""The study's bar chart: TCO benefit of every prefill::decode pair vs the baseline, one panel per scenario."""

from __future__ import annotations

import math
from pathlib import Path

from hetagent.errors import HetagentError
from hetagent.planner.tco_study import StudyResult

PANEL_COLUMNS = 4


def write_chart(outcome: StudyResult, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none assumed
    import matplotlib.pyplot as plt

    path = Path(path)
    scenarios = outcome.scenarios()
    rows = math.ceil(len(scenarios) / PANEL_COLUMNS)
    columns = min(PANEL_COLUMNS, len(scenarios))
    pairs = len(outcome.study.devices) ** 2
    fig, axes = plt.subplots(rows, columns, figsize=(max(4.0, 0.22 * pairs) * columns, 3.0 * rows), squeeze=False)
    baseline = "::".join(outcome.study.baseline)
    for index, (ax, (model, dtype, workload, sla)) in enumerate(zip(axes.flat, scenarios)):
        results = [r for r in outcome.results if (r.model, r.dtype, r.workload, r.sla) == (model, dtype, workload, sla)]
        labels = [r.pair for r in results]
        values = [r.benefit or 0.0 for r in results]  # infeasible pairs show as an empty slot
        colours = ["tab:red" if r.pair == baseline else "tab:blue" for r in results]
        ax.bar(range(len(results)), values, color=colours)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        # Pairs come in the same order in every panel: only the bottom panel of each column gets the pair labels
        # (tick labels are most of the drawing time)
        if index + columns >= len(scenarios):
            ax.set_xticks(range(len(results)), labels, rotation=90, fontsize=6)
        else:
            ax.set_xticks([])
        ax.set_title(f"{model} {dtype}, {workload.name} {workload.input_tokens}/{workload.output_tokens}, {sla.name}", fontsize=8)
        ax.set_ylabel(f"TCO benefit vs {baseline}", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(scenarios):]:
        ax.set_visible(False)
    fig.suptitle(f"{outcome.study.name}: TCO benefit per prefill::decode pair (price book {outcome.study.pricebook.name})")
    # fixed margins: tight_layout would measure every one of the hundreds of tick labels (seconds)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.12, top=0.94, hspace=0.3, wspace=0.15)
    return save_figure(fig, path)


def save_figure(fig, path: Path, dpi: int = 90) -> Path:
    """Write a figure as a PNG and close it; an unwritable path is an error naming it."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=dpi)
    except OSError as exc:
        raise HetagentError(f"cannot write the chart to {path}: {exc}") from None
    finally:
        plt.close(fig)
    return path
