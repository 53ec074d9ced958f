"""Shared by the accuracy benchmarks: absolute relative errors, summarised as a rich table."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def abs_rel_errors(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return np.abs(predicted - measured) / measured


def summary_row(label: Sequence[str], errors: np.ndarray) -> list[str]:
    return [*label, str(len(errors)), f"{np.median(errors):.1%}", f"{np.percentile(errors, 90):.1%}"]


def print_summary(title: str, label_columns: Iterable[str], rows: list[list[str]]) -> None:
    from hetagent.cli.output import print_table

    print_table(title, [*label_columns, "rows", "median |err|", "p90 |err|"], rows)
